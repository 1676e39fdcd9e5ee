"""Checks of plugin options (a head's or backbone's constructor keywords, written in YAML).

Each raises ``ValueError`` with the option's name, what it accepts and what it got;
:func:`benchkit.models.grader.create_head` prefixes the plugin's name.
"""

from __future__ import annotations

import math


def check_choice(option: str, value, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"option {option!r} must be one of {', '.join(repr(c) for c in choices)}, "
                         f"got {value!r}")
    return value


def check_number(option: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float inside the given bounds, else a ValueError naming the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"option {option!r} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"option {option!r} must lie in {left}{lo}, {hi}{right}, got {value!r}")
    return float(value)


def check_dropout(value) -> float:
    return check_number("dropout", value, low=0.0, high=1.0, high_open=True)
