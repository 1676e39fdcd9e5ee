"""The ``benchkit`` command line (``main``), its ``data`` commands (``data``) and ``cache`` command (``cache``)."""

from benchkit.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
