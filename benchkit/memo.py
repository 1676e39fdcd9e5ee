"""Process-wide memos: the one idiom for what benchkit computes once per process and keeps.

A :class:`Memo` is a bounded mapping (least recently used entries go first) with a name; every memo is listed
in :data:`MEMOS`, so :func:`clear_memos` empties them all (a notebook after the data on disk changed, a test
that needs a cold process) and :func:`memo_sizes` shows what they hold. Keys identify what a value depends
on (a file's version, a data source, an architecture), so a memo never answers with a stale value.

>>> squares = Memo("squares", maxsize=2)
>>> squares.get(3, lambda: 9)
9
>>> squares.get(3, lambda: 0)   # kept: not computed again
9
>>> clear_memos(); len(squares)
0
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

V = TypeVar("V")
MEMOS: dict[str, "Memo"] = {}


class Memo:
    """A named, bounded, clearable memo of values by hashable key."""

    def __init__(self, name: str, maxsize: int):
        self.name, self.maxsize = name, maxsize
        self._values: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        MEMOS[name] = self  # a module imported again replaces its memo

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The value kept for ``key``, else ``compute()`` kept and returned."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()
        self.put(key, value)
        return value

    def put(self, key: Hashable, value) -> None:
        """Keep ``value`` for ``key`` (the least recently used entry goes when the memo is full)."""
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.maxsize:
                self._values.popitem(last=False)

    def peek(self, key: Hashable, default=None):
        """The value kept for ``key`` without computing one."""
        with self._lock:
            return self._values.get(key, default)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Memo({self.name!r}: {len(self)}/{self.maxsize})"


def memoized(name: str, maxsize: int):
    """Decorator: a function of hashable arguments, computed once per arguments in a :class:`Memo`."""
    def decorate(function: Callable[..., V]) -> Callable[..., V]:
        memo = Memo(name, maxsize)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            key = (args, tuple(sorted(kwargs.items())))
            return memo.get(key, lambda: function(*args, **kwargs))
        wrapper.memo = memo
        return wrapper
    return decorate


def clear_memos() -> None:
    """Empty every memo of this process."""
    for memo in MEMOS.values():
        memo.clear()


def memo_sizes() -> dict[str, tuple[int, int]]:
    """``{name: (entries, maxsize)}`` of every memo."""
    return {name: (len(memo), memo.maxsize) for name, memo in MEMOS.items()}
