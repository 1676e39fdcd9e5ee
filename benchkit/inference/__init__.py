"""Using a finished run: load it and grade images (``predict``), write it as a portable folder (``export``)."""
