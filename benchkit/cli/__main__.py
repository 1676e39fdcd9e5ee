"""``python -m benchkit.cli`` is the ``benchkit`` command."""

import sys

from benchkit.cli.main import main

sys.exit(main())
