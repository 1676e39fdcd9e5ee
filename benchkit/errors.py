"""Exceptions with the exit status the command line maps them to, and the rule for a user's mistake.

Every :class:`BenchkitError` carries a message written for the user (exit status 2). The command
line also turns what else a user's input causes — a path that cannot be read or written, YAML that
does not parse — into one line and exit status 2 (:func:`user_error_message`); any other exception
is a bug in benchkit and keeps its traceback (exit status 1).
"""

from __future__ import annotations


class BenchkitError(Exception):
    """Base class of benchkit's own errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ConfigError(BenchkitError):
    """An experiment file, override or plugin name is wrong (usage error, exit 2)."""


class DataError(BenchkitError):
    """A dataset cannot be read as declared (missing files, bad label rows...)."""


class WeightsError(BenchkitError):
    """Pretrained or local weights cannot be loaded."""


class OutputError(BenchkitError, OSError):
    """A result file cannot be written (read-only folder, full disk, a file where a folder should be)."""


def path_argument(value, argument: str, what: str = "a path"):
    """``value`` as a :class:`~pathlib.Path`; a ConfigError naming ``argument`` when it is not a str or a path
    (``None``, a number...), so a Python caller gets one clear line instead of a TypeError."""
    import os
    from pathlib import Path
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise ConfigError(f"{argument}: expected {what} (a str or pathlib.Path), got {type(value).__name__} {value!r}")


def format_listing(items: list[str], limit: int = 10) -> str:
    """First ``limit`` items one per line, then how many more there are."""
    shown = [f"  - {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"  ... and {len(items) - limit} more ({len(items)} in all)")
    return "\n".join(shown)


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason`` of an OSError in one line (``[Errno 13] Permission denied: 'x'`` -> ``x: Permission denied``)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for an exception a user's input caused, or None for a bug in benchkit."""
    import yaml
    if isinstance(exc, BenchkitError):
        return str(exc)
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    if isinstance(exc, yaml.YAMLError):
        return f"not valid YAML: {' '.join(str(exc).split())}"
    return None
