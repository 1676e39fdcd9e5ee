"""The grid figure: the six heads on tf_efficientnet_lite0, a fixed number of epochs, no early stopping, run
one after another in this process and then packed as ``--jobs N`` worker processes on the same device;
the ratio of their wall times, and how far the packed (or a compiled) run's validation MAE moves from the
sequential eager run of the same seed.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import pandas as pd
import yaml

from benchkit.cli import main

from _bench import Figure

HEADS = ["regression", "softmax", "coral", "corn", "clm", "soft_label"]


def grid_experiment(folder: Path, root: Path | None, heads: list[str], epochs: int, size: int,
                    device: str, train: dict | None = None) -> Path:
    """The grid's experiment file: the real data at ``size`` px when ``root`` is given, else synthetic."""
    data = ({"format": "roboflow_csv", "root": str(root), "image_size": size} if root is not None else
            {"format": "synthetic", "image_size": size,
             "synthetic": {"num_classes": 6, "train": 96, "valid": 32, "test": 32, "image_size": size}})
    raw = {"name": "gpu_grid", "data": data,
           "models": [{"backbone": {"name": "tf_efficientnet_lite0", "pretrained": True, "freeze": 0},
                       "head": head} for head in heads],
           "seeds": [27],
           "train": {"epochs": epochs, "batch_size": 32, "optimizer": {"lr": 5e-4},
                     "early_stopping": {"patience": None}, "device": device, **(train or {})},
           "evaluation": {"plots": False, "bootstrap": {"n_resamples": 1000, "seed": 0}}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"grid_{len(heads)}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run(experiment: Path, out: Path, *extra: str) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the leaderboard tables; the figures say what counts
        code = main(["run", str(experiment), "--out", str(out), "--quiet", *extra])
    seconds = time.perf_counter() - start
    board = pd.read_csv(out / "leaderboard.csv").set_index("head")
    if code != 0:
        failed = board[board.status != "ok"]
        raise RuntimeError(f"grid runs failed: {failed.error.to_dict()}")
    return seconds, board


def grid_figures(work: Path, root: Path | None, heads: list[str], epochs: int, size: int, jobs: int,
                 device: str) -> tuple[list[Figure], pd.DataFrame]:
    """Sequential vs packed wall time, and the packed runs' largest valid score-MAE change."""
    experiment = grid_experiment(work, root, heads, epochs, size, device)
    sequential_s, sequential = _run(experiment, work / "sequential")
    packed_s, packed = _run(experiment, work / "packed", "--jobs", str(jobs))
    ratio = packed_s / sequential_s
    diff = (packed.valid_score_mae - sequential.valid_score_mae).abs()
    data = "hair-loss" if root is not None else "synthetic"
    details = {"heads": heads, "epochs": epochs, "size": size, "jobs": jobs, "data": data,
               "sequential_seconds": sequential_s, "packed_seconds": packed_s,
               "valid_score_mae_sequential": sequential.valid_score_mae.to_dict(),
               "valid_score_mae_packed": packed.valid_score_mae.to_dict(),
               "peak_gpu_mb_packed": packed.get("peak_gpu_mb", pd.Series(dtype=float)).to_dict(),
               "train_seconds_sequential": sequential.train_seconds.to_dict(),
               "train_seconds_packed": packed.train_seconds.to_dict()}
    figures = [
        Figure("grid_packed_vs_sequential_wall_time", ratio, "<= 0.3x", ratio <= 0.3, "x", details,
               note=f"{len(heads)} lite0 runs (the heads), {epochs} epochs, no early stopping, {data} at {size}px: "
                    f"--jobs {jobs} {packed_s:.0f} s vs one after another {sequential_s:.0f} s (which alone "
                    f"decodes the images into the cache, once)"),
        Figure("packed_vs_sequential_valid_score_mae_max_abs_diff", float(diff.max()), "<= 0.02",
               bool(diff.max() <= 0.02), "", {"abs_diff": diff.to_dict()},
               note="same seed; where not 0: on a GPU nondeterministic kernels (atomics in cuDNN backward), on a "
                    "CPU the thread count (workers use resources.cpus threads) change the rounding"),
    ]
    return figures, sequential


def compiled_quality_figure(work: Path, root: Path | None, epochs: int, size: int, device: str, mode: str,
                            sequential: pd.DataFrame) -> Figure:
    """The regression run compiled (``train.compile: mode``) against the sequential eager one, same seed."""
    experiment = grid_experiment(work, root, ["regression"], epochs, size, device, {"compile": mode})
    seconds, compiled = _run(experiment, work / f"compiled-{mode}")
    eager_mae = float(sequential.loc["regression", "valid_score_mae"])
    compiled_mae = float(compiled.loc["regression", "valid_score_mae"])
    diff = abs(compiled_mae - eager_mae)
    return Figure("compiled_vs_eager_valid_score_mae_abs_diff", diff, "<= 0.02", diff <= 0.02, "",
                  {"mode": mode, "eager_valid_score_mae": eager_mae, "compiled_valid_score_mae": compiled_mae,
                   "compiled_run_seconds": seconds,
                   "compiled_train_seconds": float(compiled.loc["regression", "train_seconds"]),
                   "eager_train_seconds": float(sequential.loc["regression", "train_seconds"])},
                  note=f"lite0 regression, {epochs} epochs, compile {mode}: valid score MAE {compiled_mae:.4f} vs "
                       f"eager {eager_mae:.4f}; compiled runs drop the ragged last batch (static shapes) and fuse "
                       f"kernels (other rounding), so bitwise equality is not expected")
