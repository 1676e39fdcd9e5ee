"""Memory one run used, and what to say when a run does not fit.

Several runs may share one GPU (``benchkit run --jobs N``), so each run reports its own peak: the
CUDA allocator's peak on its device, and the peak resident memory of the process that ran it. The
resident peak is reset at the start of each run where Linux allows it (``/proc/self/clear_refs``),
so runs executed one after another in one process are reported separately.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import torch

_MB = 2 ** 20


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.row()`` -> ``{peak_gpu_mb, peak_rss_mb}``.

    ``peak_gpu_mb`` is None where the run did not use CUDA.

    >>> with PeakMemory(torch.device("cpu")) as peak:
    ...     _ = bytearray(8 * 2 ** 20)
    >>> row = peak.row(); row["peak_gpu_mb"] is None and row["peak_rss_mb"] > 8
    True
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else None

    def __enter__(self) -> "PeakMemory":
        self.rss_is_per_run = _reset_peak_rss()
        if self._cuda():
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda" and torch.cuda.is_available()

    def row(self) -> dict:
        gpu = round(torch.cuda.max_memory_allocated(self.device) / _MB, 1) if self._cuda() else None
        return {"peak_gpu_mb": gpu, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (since the last reset, where Linux allows one)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / _MB, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / _MB if sys.platform == "darwin" else peak * 1024 / _MB, 1)


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set (Linux ``clear_refs`` value 5); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or host) allocation failure, whichever way the library reported it."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def describe_out_of_memory(batch_size: int, device: torch.device | str | None = None) -> str:
    """The one-line error of a run that did not fit: what it had, what it held, what to try."""
    text = f"out of memory with batch_size {batch_size}"
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        peak = torch.cuda.max_memory_allocated(device)
        text += (f" on {torch.cuda.get_device_name(device)} (this run's peak {peak / _MB:.0f} MB; "
                 f"{free / _MB:.0f} of {total / _MB:.0f} MB free now)")
    shared = os.environ.get("BENCHKIT_RUNS_PER_DEVICE")
    hint = f"try --set train.batch_size={max(1, batch_size // 2)}"
    if shared and int(shared) > 1:
        hint += f", or fewer runs per GPU (--jobs; {shared} share this one)"
    return f"{text}: {hint}"
