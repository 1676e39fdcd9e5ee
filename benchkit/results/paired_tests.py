"""Paired tests of the aggregated view's configurations against one of them (the reference, or the best).

Each configuration's runs are paired with the other configuration's runs of the same split strategy, fold and
seed (an ensemble, which has no seed, with every run of its fold), and the paired bootstrap
(:func:`~benchkit.evaluation.significance.paired_bootstrap_replicates`) resamples the test images they share;
with two or more shared seeds the Wilcoxon signed-rank test compares the per-seed values too. The comparisons
against one configuration form a family: each p-value gets a Holm-adjusted twin
(:func:`~benchkit.evaluation.significance.holm`) over the configurations that could be tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchkit.evaluation.metrics import CORE_METRICS, HIGHER_IS_BETTER
from benchkit.evaluation.significance import ALPHA, holm, paired_bootstrap_replicates, wilcoxon_seeds
from benchkit.memo import Memo
from benchkit.results import run_folder
from benchkit.results.ensembles import is_ensemble, predictions_path
from benchkit.results.leaderboard import metric_of

TEST_COLUMNS = ("delta", "p_value", "p_holm", "p_wilcoxon", "p_wilcoxon_holm", "note")


def compare_with(aggregated: pd.DataFrame, ok: pd.DataFrame, labels: pd.Series, target: str, metric_column: str,
                 out_dir: Path, n_resamples: int, seed: int) -> pd.DataFrame:
    """Every configuration of ``aggregated`` against the configuration labelled ``target``, on ``metric_column``.

    ``ok``: the finished rows (runs and ensembles), ``labels``: their configuration labels. Returns one row per
    row of ``aggregated`` (same index) with ``delta`` (the configuration minus ``target``), ``p_value`` (paired
    bootstrap), ``p_holm``, ``p_wilcoxon``, ``p_wilcoxon_holm`` and ``note`` (why a configuration was not tested);
    ``target`` itself and configurations without a shared replicate get nan.
    """
    split, metric = metric_column.split("_", 1)[0], metric_of(metric_column)
    tests = pd.DataFrame(np.nan, index=aggregated.index, columns=list(TEST_COLUMNS)).astype({"note": object})
    tests["note"] = ""
    target_rows = ok[labels == target]
    num_classes = int(ok["num_classes"].dropna().iloc[0]) if "num_classes" in ok and ok["num_classes"].notna().any() \
        else None
    for i, label in aggregated["config"].items():
        if label == target:
            continue
        runs = ok[labels == label]
        pairs = [(r, t) for _, r in runs.iterrows() for _, t in target_rows.iterrows() if same_replicate(r, t)]
        if not pairs or num_classes is None:
            continue
        if metric not in CORE_METRICS:
            tests.at[i, "note"] = f"no paired bootstrap for {metric} (only {', '.join(CORE_METRICS)})"
        else:
            test = _paired_test([predictions_path(out_dir, a, split) for a, _ in pairs],
                                [predictions_path(out_dir, b, split) for _, b in pairs],
                                metric, num_classes, n_resamples, seed)
            tests.at[i, "delta"], tests.at[i, "p_value"] = test["delta"], test["p_value"]
        if len(pairs) >= 2 and not any(is_ensemble(a) or is_ensemble(b) for a, b in pairs):
            tests.at[i, "p_wilcoxon"] = wilcoxon_seeds([a[metric_column] for a, _ in pairs],
                                                       [b[metric_column] for _, b in pairs])
    tests["p_holm"] = holm(tests["p_value"].to_numpy())
    tests["p_wilcoxon_holm"] = holm(tests["p_wilcoxon"].to_numpy())
    return tests


def not_worse(tests: pd.DataFrame, metric_column: str, alpha: float = ALPHA) -> pd.Series:
    """Per tested configuration: True unless it is worse than the configuration it was compared with and its
    Holm-adjusted p-value is below ``alpha``; None where it was not tested."""
    higher = HIGHER_IS_BETTER.get(metric_of(metric_column), True)
    worse = tests["delta"] < 0 if higher else tests["delta"] > 0
    significant = tests["p_holm"] < alpha
    return pd.Series([None if np.isnan(p) else not (w and s) for p, w, s in zip(tests["p_holm"], worse, significant)],
                     index=tests.index, dtype=object)


def same_replicate(a: pd.Series, b: pd.Series) -> bool:
    """Same split strategy and fold, and the same seed unless one of them is an ensemble (no seed)."""
    if a["split"] != b["split"] or _fold(a) != _fold(b):
        return False
    return _no_seed(a["seed"]) or _no_seed(b["seed"]) or int(a["seed"]) == int(b["seed"])


def _no_seed(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))


def _fold(row: pd.Series) -> int | None:
    fold = row.get("fold")
    return None if fold is None or pd.isna(fold) else int(fold)


_PAIRED = Memo("paired-tests", maxsize=1024)


def _paired_test(paths_a: list[Path], paths_b: list[Path], metric: str, num_classes: int, n_resamples: int,
                 seed: int) -> dict:
    """The paired bootstrap of two configurations' prediction files, computed once per version of the files
    (the leaderboard is rebuilt after every run; only the tests whose files changed run again)."""
    key = (tuple(map(run_folder.file_version, paths_a)), tuple(map(run_folder.file_version, paths_b)), metric,
           num_classes, n_resamples, seed)

    def compute() -> dict:
        replicates_a, _ = _replicates(paths_a)
        replicates_b, test_sets = _replicates(paths_b)
        return paired_bootstrap_replicates(replicates_a, replicates_b, metric, num_classes, n_resamples, seed,
                                           test_sets=test_sets)
    return _PAIRED.get(key, compute)


def _replicates(paths: list[Path]) -> tuple[list, list[tuple[str, ...]]]:
    """``(target, pred, score)`` of each predictions file, and the images each covers (replicates on the same
    images share a bootstrap draw)."""
    frames = [run_folder.read_table(path) for path in paths]
    return ([(f["target"].to_numpy(), f["pred"].to_numpy(), f["score"].to_numpy()) for f in frames],
            [tuple(f["image"].astype(str)) for f in frames])
