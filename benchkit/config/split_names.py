"""The names of splits: what a run scores and the split strategies, with 0.1's names read as today's."""

from __future__ import annotations

import re
from typing import Any

EVALUATED_SPLITS = ("valid", "test")
"""The splits a run scores, in report order (``train`` is only trained on)."""
SPLIT_STRATEGIES = ("official", "group_kfold", "group_holdout")
_LEGACY_KFOLD = re.compile(r"\bgroup\d+fold\b")


def strategy_of(label: Any) -> Any:
    """A split label in today's name: 0.1's ``group5fold`` (k in the name) is ``group_kfold``."""
    return _LEGACY_KFOLD.sub("group_kfold", label) if isinstance(label, str) else label
