"""``python -m benchkit`` is the ``benchkit`` command."""

import sys

from benchkit.cli import main

sys.exit(main())
