"""Limits on the values of an experiment, checked before anything else reads them.

A YAML file can make a few lines stand for billions of values (anchors and aliases nested in each
other, the "billion laughs"), or for a value that contains itself; a mapping built in Python can do
the same with shared lists. Validating or copying such a value expands it, so it is refused first:
at most :data:`MAX_VALUES` values once aliases are expanded, nested at most :data:`MAX_DEPTH` deep,
no value inside itself. Every number anywhere, free-form options included, must be finite and fit
64 bits. Each refusal is a :class:`~benchkit.errors.ConfigError` naming the source and the key.
"""

from __future__ import annotations

import math
from typing import Any

from benchkit.errors import ConfigError

MAX_VALUES = 100_000
"""Values an experiment may hold once every alias is expanded (the shipped experiments hold a few hundred)."""
MAX_DEPTH = 64
"""How deep mappings and lists may nest."""
INT_LIMIT = 2 ** 63
"""Integers must lie in ``-2**63 .. 2**63 - 1`` (what torch, numpy and C take)."""


def check_values(raw: Any, source: str) -> None:
    """Refuse ``raw`` (a parsed YAML document or a mapping built in code) when it expands beyond
    :data:`MAX_VALUES` values or :data:`MAX_DEPTH` levels, contains itself, or holds a number that is not
    finite or does not fit 64 bits; the message names ``source`` and the key."""
    sizes: dict[int, int] = {}
    shared: set[int] = set()
    total = _walk(raw, (), sizes, shared, set(), source)
    if total > MAX_VALUES:
        where = _largest_path(raw, sizes, shared)
        raise ConfigError(f"{source}: key {where!r} expands to more than the {MAX_VALUES:,} values an experiment "
                          f"may hold once its YAML aliases (*name) are expanded; write the values out instead of "
                          f"nesting aliases")


def key_path(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "<top>"


def _children(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    return []


def _walk(value: Any, path: tuple, sizes: dict[int, int], shared: set[int], open_: set[int], source: str) -> int:
    if not isinstance(value, (dict, list, tuple)):
        _check_scalar(value, path, source)
        return 1
    ident = id(value)
    if ident in open_:
        raise ConfigError(f"{source}: key {key_path(path)!r} contains itself (a YAML alias *name inside the "
                          f"value its anchor &name marks); write the value out")
    if ident in sizes:
        shared.add(ident)
        return sizes[ident]
    if len(path) >= MAX_DEPTH:
        raise ConfigError(f"{source}: key {key_path(path)!r} is nested more than {MAX_DEPTH} levels deep")
    open_.add(ident)
    total = 1
    for key, child in _children(value):
        if isinstance(value, dict) and not isinstance(key, (str, int, float, bool)) and key is not None:
            raise ConfigError(f"{source}: key {key_path((*path, '?'))!r}: a key must be a plain name, "
                              f"not a {type(key).__name__}")
        total += _walk(child, (*path, key), sizes, shared, open_, source)
        if total > MAX_VALUES * 1000:  # far past the limit: stop counting, the message is the same
            break
    open_.discard(ident)
    sizes[ident] = total
    return total


def _check_scalar(value: Any, path: tuple, source: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: key {key_path(path)!r}: {value} is not a finite number")
    if isinstance(value, int) and not -INT_LIMIT <= value < INT_LIMIT:
        raise ConfigError(f"{source}: key {key_path(path)!r}: {value} is too large (integers must fit "
                          f"64 bits, |value| < 2**63)")


def _largest_path(raw: Any, sizes: dict[int, int], shared: set[int]) -> str:
    """Where the expansion happens: follow the largest value down while it alone is over the limit, up to
    the value whose own contents are aliases (or each under the limit)."""
    path: tuple = ()
    node = raw
    while True:
        children = [(key, child, sizes.get(id(child), 1)) for key, child in _children(node)]
        if not children:
            return key_path(path)
        key, child, size = max(children, key=lambda item: item[2])
        if size <= MAX_VALUES or id(child) in shared:
            return key_path(path)
        path, node = (*path, key), child
