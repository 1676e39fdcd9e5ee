"""Execution: an experiment's plan, input checks and claims (``experiment``), where runs execute
(``executors``: in process, N processes, Ray) and one run as a recipe (``runner``)."""
