"""Name -> factory registries for backbones, heads and dataset formats, filled by decorators and plugins.

A registry is a plain dict wrapped with lookup that suggests close names. First-party plugins
(``benchkit.backbones``, ``benchkit.heads``, ``benchkit.data.formats``), installed entry points (groups
``benchkit.backbones``, ``benchkit.heads``, ``benchkit.dataset_formats``) and files or modules named by
an experiment's ``plugins:`` fill it.

>>> from benchkit.registry import HEADS
>>> "regression" in HEADS.names()
True
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import importlib.util
import sys
import traceback
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Iterable

from benchkit.errors import ConfigError


class Registry:
    """A dict from name to factory, with decorators and helpful lookup errors."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str):
        self.kind = kind
        self._builtin_package = builtin_package
        self._entry_point_group = entry_point_group
        self._entries: dict[str, Callable] = {}
        self._prefixes: dict[str, Callable] = {}
        self._loaded = False

    def register(self, name: str | None = None, *, force: bool = False, prefix: bool = False):
        """Decorator registering a factory under ``name`` (default: its ``__name__``).

        ``prefix=True`` registers a generic adapter matched by ``<name>:<anything>``.
        Registering an existing name raises unless ``force=True``.
        """

        def decorator(factory: Callable) -> Callable:
            key = name or factory.__name__
            table = self._prefixes if prefix else self._entries
            if key in table and table[key] is not factory and not force:
                raise ValueError(
                    f"{self.kind} {key!r} is already registered (by {_origin(table[key])}); "
                    f"pass force=True to replace it"
                )
            table[key] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable:
        """The factory for ``name``; a ConfigError naming the closest names if unknown."""
        self.load_plugins()
        if name in self._entries:
            return self._entries[name]
        prefix, sep, _ = name.partition(":")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix]
        choices = self.names() + [f"{p}:<name>" for p in self._prefixes]
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown {self.kind} {name!r}{hint} (known: {', '.join(choices)})"
        )

    def create(self, name: str, *args, **kwargs):
        """Call the factory for ``name``; generic ``prefix:`` adapters get the full name first."""
        factory = self.get(name)
        if name not in self._entries:
            return factory(name, *args, **kwargs)
        return factory(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching an fnmatch pattern, sorted."""
        self.load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def prefixes(self) -> list[str]:
        self.load_plugins()
        return sorted(self._prefixes)

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except ConfigError:
            return False
        return True

    def load_plugins(self) -> None:
        """Import first-party plugins and installed entry points, once."""
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self._builtin_package)
        for ep in entry_points(group=self._entry_point_group):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others
                print(f"warning: {self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                      file=sys.stderr)


def _origin(factory: Callable) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')}"


BACKBONES = Registry("backbone", "benchkit.backbones", "benchkit.backbones")
HEADS = Registry("head", "benchkit.heads", "benchkit.heads")
DATASET_FORMATS = Registry("dataset format", "benchkit.data.formats", "benchkit.dataset_formats")


def register_backbone(name: str | None = None, *, force: bool = False, prefix: bool = False):
    """Register a backbone factory ``f(**options) -> benchkit.models.backbone.Backbone``."""
    return BACKBONES.register(name, force=force, prefix=prefix)


def register_head(name: str | None = None, *, force: bool = False):
    """Register a head class (a ``benchkit.models.head.Head`` subclass) under ``name``."""
    return HEADS.register(name, force=force)


def register_dataset_format(name: str | None = None, *, force: bool = False):
    """Register a dataset format: a class whose ``read(self, table)`` lists a dataset's images and labels.

    The contract (what ``table`` offers, the optional class attributes) is :mod:`benchkit.data.reading`.
    """
    def decorator(cls):
        if not callable(getattr(cls, "read", None)):
            raise TypeError(f"dataset format {name or cls.__name__!r}: {cls!r} has no read(self, table) method")
        return DATASET_FORMATS.register(name, force=force)(cls)

    return decorator


def import_plugins(specs: Iterable[str], base_dir: Path | None = None) -> None:
    """Import plugin files (``path/to/file.py``, relative to ``base_dir``) or modules (``pkg.mod``)."""
    for spec in specs:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.is_file():
                raise ConfigError(f"plugin file not found: {path}")
            module_name = f"benchkit_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
            if module_name in sys.modules:
                continue
            spec_obj = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[module_name] = module
            try:
                with _showing_deprecations():
                    spec_obj.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise plugin_import_error(exc, f"plugin file {path}", path) from None
        else:
            try:
                with _showing_deprecations():
                    importlib.import_module(spec)
            except ModuleNotFoundError as exc:
                raise ConfigError(f"plugin module {spec!r} cannot be imported: {exc}") from exc
            except Exception as exc:
                found = importlib.util.find_spec(spec)
                origin = Path(found.origin) if found is not None and found.origin else None
                raise plugin_import_error(exc, f"plugin module {spec!r}", origin) from None


@contextlib.contextmanager
def _showing_deprecations():
    """Show benchkit's own deprecation warnings while a plugin imports (Python hides them outside ``__main__``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("default", category=DeprecationWarning, message=r"benchkit[. ]")
        yield


def plugin_import_error(exc: Exception, what: str, path: Path | None) -> ConfigError:
    """A ConfigError naming the plugin, the line of its file where importing it failed, and why."""
    if isinstance(exc, SyntaxError):
        return ConfigError(f"{what}: syntax error at {exc.filename}, line {exc.lineno}: {exc.msg}")
    where = ""
    if path is not None:
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
                 if Path(frame.filename).resolve() == path.resolve()]
        where = f", line {lines[-1]}" if lines else ""
    reason = " ".join(str(exc).split()) or "(no message)"
    return ConfigError(f"{what} failed to import{where}: {type(exc).__name__}: {reason}")
