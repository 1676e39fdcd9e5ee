"""Start ``benchkit run`` as a separate process, as a user or a scheduler would (for kill and concurrency tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchkit.io import read_json
from benchkit.results import run_folder

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
"""One thread per process: the same arithmetic in every process, and two processes fit on two cores."""


def run_command(experiment: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchkit.cli", "run", str(experiment), "--out", str(out), "--quiet", *extra]


def start(experiment: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    """Start ``benchkit run`` with stdout and stderr going to ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen(run_command(experiment, out, *extra), stdout=fh, stderr=subprocess.STDOUT,
                                env=ENV)


def run(experiment: Path, out: Path, *extra: str, timeout: float = 240,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``benchkit run`` to its end; ``env`` adds variables (e.g. ``BENCHKIT_TEST_KILL``)."""
    return subprocess.run(run_command(experiment, out, *extra), capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=timeout)


def run_results(run_dir: Path) -> dict:
    """Everything a run produced that must not depend on interruptions (timings left out)."""
    row = read_json(run_dir / "metrics.json")["row"]
    for measured in ("train_seconds", "wall_seconds", "peak_rss_mb", "peak_gpu_mb"):  # of the process, not the run
        row.pop(measured, None)
    weights, info = run_folder.read_best(run_dir)
    return {"row": json.dumps(row, sort_keys=True),
            "history": pd.read_csv(run_dir / "history.csv").drop(columns="seconds"),
            "predictions": {s: pd.read_csv(run_dir / f"predictions_{s}.csv") for s in ("valid", "test")},
            "best_epoch": info["best_epoch"], "weights": weights}


def assert_same_results(a: dict, b: dict) -> None:
    import torch
    assert a["row"] == b["row"]
    pd.testing.assert_frame_equal(a["history"], b["history"], check_exact=True)
    for split in a["predictions"]:
        pd.testing.assert_frame_equal(a["predictions"][split], b["predictions"][split], check_exact=True)
    assert a["best_epoch"] == b["best_epoch"]
    assert a["weights"].keys() == b["weights"].keys()
    for key, tensor in a["weights"].items():
        assert torch.equal(tensor, b["weights"][key]), key
