"""Heads comparison on a frozen backbone: the same runs with and without the feature cache.

Four heads on one fully frozen backbone (``freeze: all``, no augmentation) are trained twice through
the runner (``execute_run``, as ``benchkit run`` does per run, without plots): once with
``data.feature_cache: false`` (every epoch runs the backbone) and once with it on, starting from an
empty feature cache. Both sides read the same, already built image cache.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import benchkit.backbones  # noqa: F401  (registers the first-party backbones)
from benchkit.training import feature_cache
from benchkit.config.validation import validate_experiment
from benchkit.config.expansion import expand_runs
from benchkit.data.prepare import decoded_split, prepare_dataset
from benchkit.execution.runner import execute_run

from _bench import Figure, timed

HEADS = ("regression", "softmax", "coral", "corn")
BACKBONE = {"name": "tf_efficientnet_lite0", "pretrained": True, "freeze": "all"}


def _experiment(root: Path, cache_dir: Path, feature_cache: bool, per_split: int, epochs: int,
                size: int, heads: int) -> dict:
    return {
        "name": f"heads-{'cached' if feature_cache else 'uncached'}",
        "data": {"format": "roboflow_csv", "root": str(root), "image_size": size, "max_per_split": per_split,
                 "cache_dir": str(cache_dir), "feature_cache": feature_cache},
        "models": [{"backbone": BACKBONE, "head": {"name": h}} for h in HEADS[:heads]],
        "seeds": [0],
        "train": {"epochs": epochs, "batch_size": 32, "optimizer": {"lr": 1e-3}, "augmentation": "none",
                  "early_stopping": {"patience": 50}},
        "evaluation": {"bootstrap": {"n_resamples": 1000}},
    }


def _runs(raw: dict, out: Path) -> tuple[float, list[dict]]:
    specs = expand_runs(validate_experiment(raw))
    rows = []
    seconds, _ = timed(lambda: rows.extend(execute_run(s, out, quiet=True) for s in specs))
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"heads benchmark run {failed[0]['run_id']} failed: {failed[0]['error']}")
    return seconds, rows


def heads_comparison(root: Path, cache_dir: Path, per_split: int, epochs: int, size: int = 224,
                     heads: int = 4) -> Figure:
    """Wall time of the four runs with the feature cache over without it; metrics compared."""
    work = Path(tempfile.mkdtemp(prefix="benchkit-heads-"))
    try:
        uncached_raw = _experiment(root, cache_dir, False, per_split, epochs, size, heads)
        spec = expand_runs(validate_experiment(uncached_raw))[0]
        dataset = prepare_dataset(spec)
        for name in dataset.splits:  # the image cache is built before either side is timed
            decoded_split(spec, dataset, name, size)
        uncached_s, uncached = _runs(uncached_raw, work / "uncached")
        shutil.rmtree(cache_dir / "features", ignore_errors=True)
        feature_cache.clear_memory()
        cached_raw = _experiment(root, cache_dir, True, per_split, epochs, size, heads)
        cached_s, cached = _runs(cached_raw, work / "cached")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pairs = [(a.get(k, np.nan), b.get(k, np.nan)) for a, b in zip(cached, uncached)
             for k in sorted(set(a) | set(b))
             if k.startswith(("valid_", "test_")) and isinstance(a.get(k, b.get(k)), (int, float))]
    max_diff = max((_difference(x, y) for x, y in pairs), default=0.0)
    ratio = cached_s / uncached_s
    sizes = {n: len(s) for n, s in dataset.splits.items()}
    identical = max_diff <= 1e-4
    note = (f"tf_efficientnet_lite0 ImageNet weights (offline), freeze all, {size}px, {heads} heads x "
            f"{epochs} epoch(s), images {sizes}, max metric difference {max_diff:.2g}")
    return Figure("heads_comparison_feature_cache_vs_uncached_time", ratio,
                  "<= 0.35x, identical metrics", ratio <= 0.35 and identical, "x",
                  {"heads": list(HEADS[:heads]), "epochs": epochs, "images": sizes, "size": size,
                   "uncached_seconds": uncached_s, "cached_seconds": cached_s,
                   "runs_include": "per-run plots and a 1000-resample bootstrap, as benchkit run writes them",
                   "metric_values_compared": len(pairs), "max_abs_metric_difference": max_diff,
                   "test_mae": {r["head"]: r["test_mae"] for r in cached}}, note=note)


def _difference(a: float, b: float) -> float:
    """|a - b|, 0 when both are undefined (nan), infinite when only one is."""
    if np.isnan(a) and np.isnan(b):
        return 0.0
    return float("inf") if np.isnan(a) or np.isnan(b) else abs(a - b)
