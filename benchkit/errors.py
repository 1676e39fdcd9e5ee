"""Exceptions with the exit status the command line maps them to."""


class BenchkitError(Exception):
    """Base class of benchkit's own errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(BenchkitError):
    """An experiment file, override or plugin name is wrong (usage error, exit 2)."""

    exit_code = 2


class DataError(BenchkitError):
    """A dataset cannot be read as declared (missing files, bad label rows...)."""

    exit_code = 2


class WeightsError(BenchkitError):
    """Pretrained or local weights cannot be loaded."""

    exit_code = 2


def format_listing(items: list[str], limit: int = 10) -> str:
    """First ``limit`` items one per line, then how many more there are."""
    shown = [f"  - {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"  ... and {len(items) - limit} more ({len(items)} in all)")
    return "\n".join(shown)
