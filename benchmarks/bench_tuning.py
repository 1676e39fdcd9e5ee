"""Tuning overhead: the seconds of a tuning trial against a plain run of the same length.

Both sides train the same model (resnet18 + regression head, random init) on the built-in synthetic data for
the same epochs, evaluated on the validation split only (what a trial evaluates), one after another in this
process. The plain side is a grid of ``trials`` learning rates run by ``run_experiment``; the tuning side is
``trials`` trials of one configuration over the same learning-rate range (Optuna ask-and-tell, the journal file,
the trial claims and folders, the budget-curve files). The figure is the median over repeats of the ratio of the
tuning side's seconds per trial to the plain side's seconds per run (target <= 1.1x).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import benchkit.backbones  # noqa: F401
from benchkit.execution.executors import LocalExecutor
from benchkit.execution.experiment import run_experiment
from benchkit.execution.plan import plan
from benchkit.execution.tuning import tune

from _bench import Figure

LRS = (1e-4, 1e-1)


def _experiment(trials: int, epochs: int, size: int, images: int, tuned: bool) -> dict:
    raw = {"name": "tuning_bench",
           "data": {"format": "synthetic", "image_size": size,
                    "synthetic": {"num_classes": 6, "train": images, "valid": images // 4, "test": images // 4,
                                  "image_size": size}},
           "models": [{"backbone": "resnet18", "head": "regression"}],
           "train": {"epochs": epochs, "batch_size": 16, "augmentation": "none", "ema": {"enabled": False},
                     "early_stopping": {"patience": None}},
           "evaluation": {"splits": ["valid"], "plots": False, "bootstrap": {"n_resamples": 1000, "seed": 0}}}
    if tuned:
        raw["tuning"] = {"trials": trials, "space": {"train.optimizer.lr": {"low": LRS[0], "high": LRS[1],
                                                                           "log": True}}}
    else:
        raw["grid"] = {"train.optimizer.lr": np.geomspace(*LRS, trials).tolist()}
    return raw


def _plain_seconds(sizes: dict, folder: Path) -> float:
    config, runs = plan(_experiment(sizes["trials"], sizes["epochs"], sizes["size"], sizes["images"], False))
    start = time.perf_counter()
    run_experiment(config, runs, folder, quiet=True)
    return (time.perf_counter() - start) / len(runs)


def _tuning_seconds(sizes: dict, folder: Path) -> float:
    config, runs = plan(_experiment(sizes["trials"], sizes["epochs"], sizes["size"], sizes["images"], True))
    start = time.perf_counter()
    tune(config, runs, folder, LocalExecutor(), quiet=True)
    return (time.perf_counter() - start) / sizes["trials"]


def tuning_figures(sizes: dict) -> list[Figure]:
    ratios, plain, tuning = [], [], []
    with tempfile.TemporaryDirectory(prefix="benchkit-bench-tuning-") as tmp:
        _plain_seconds({**sizes, "trials": 1}, Path(tmp) / "warmup")  # decodes the images into the cache once
        for repeat in range(sizes["repeats"]):
            sides = [("plain", _plain_seconds), ("tuning", _tuning_seconds)]
            seconds = {name: measure(sizes, Path(tmp) / f"{name}{repeat}")
                       for name, measure in (sides if repeat % 2 == 0 else sides[::-1])}
            plain.append(seconds["plain"])
            tuning.append(seconds["tuning"])
            ratios.append(seconds["tuning"] / seconds["plain"])
    ratio = statistics.median(ratios)
    return [Figure("tuning_trial_vs_plain_run_seconds", ratio, "<= 1.1x", ratio <= 1.1, "x",
                   {"ratios": ratios, "plain_seconds_per_run": plain, "tuning_seconds_per_trial": tuning, **sizes},
                   note=f"resnet18 regression, {sizes['epochs']} epoch(s) on {sizes['images']} synthetic "
                        f"{sizes['size']} px images, {sizes['trials']} trials vs {sizes['trials']} grid runs: "
                        f"{statistics.median(tuning):.2f} s per trial vs {statistics.median(plain):.2f} s per run")]


if __name__ == "__main__":
    import sys
    quick = "--quick" in sys.argv
    sizes = ({"trials": 3, "epochs": 1, "size": 32, "images": 64, "repeats": 2} if quick else
             {"trials": 6, "epochs": 2, "size": 64, "images": 256, "repeats": 3})
    for figure in tuning_figures(sizes):
        print(figure.line())
