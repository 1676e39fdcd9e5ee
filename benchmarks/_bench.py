"""Shared pieces of the benchmarks: figures, the real data's location, timing and resident memory."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
FLOAT32_TRAIN_BYTES = 1294 * 3 * 224 * 224 * 4
"""The seed study's in-RAM train split: 1294 images as one float32 tensor at 224 (779 MB)."""


@dataclass
class Figure:
    """One benchmark figure: a value, its target and whether it met it (None: no target)."""

    name: str
    value: float | None
    target: str
    met: bool | None
    unit: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    note: str = ""

    def line(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        verdict = "" if self.met is None else ("  [met]" if self.met else "  [MISSED]")
        note = f"  -- {self.note}" if self.note else ""
        return f"{self.name}: {_format(self.value)}{self.unit} (target {self.target}){verdict}{note}"

    def as_dict(self) -> dict:
        return asdict(self)


def _format(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def skipped(name: str, target: str, reason: str) -> Figure:
    return Figure(name, None, target, None, skipped=reason)


def hair_loss_root() -> Path | None:
    """The real dataset (``$BENCHKIT_HAIR_LOSS`` or ``../shared/data/hair-loss``), or None if absent."""
    root = Path(os.environ.get("BENCHKIT_HAIR_LOSS", REPO.parent / "shared" / "data" / "hair-loss"))
    return root if (root / "train" / "_classes.csv").is_file() else None


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call takes, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def resident_bytes() -> dict[str, int]:
    """This process's resident memory (total, anonymous, file-backed) from ``/proc/self/status``."""
    gc.collect()
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in fields:
                out[fields[key]] = int(rest.split()[0]) * 1024
    return out


def load_average() -> float:
    return os.getloadavg()[0]
