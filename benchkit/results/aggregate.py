"""Across seeds and folds: one row per configuration, and paired tests against a reference.

A configuration is everything that identifies a run except its seed and fold (model, backbone,
head, split strategy, grid values, and for ensemble rows the ensemble). Its aggregated row gives, for each metric, the mean and std
over its runs and a 95% t-interval of that mean; the significance columns compare it with the
reference configuration named in ``evaluation.reference`` on the same test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchkit.results import results_folder, run_folder
from benchkit.results.leaderboard import grid_columns, metric_of
from benchkit.results.ensembles import ensemble_rows, is_ensemble, predictions_path
from benchkit.evaluation.metrics import CORE_METRICS, HIGHER_IS_BETTER
from benchkit.evaluation.significance import (paired_bootstrap_replicates, significance_marker, t_interval,
                                              wilcoxon_seeds)

FIXED_COLUMNS = ("model", "backbone", "head", "split", "ensemble")


def config_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify a configuration: model, backbone, head, split, ensemble and the grid values."""
    return [c for c in FIXED_COLUMNS if c in frame] + grid_columns(frame)


def config_label(row: pd.Series, columns: list[str], varying: tuple[str, ...] = ()) -> str:
    """``model`` plus ``key=value`` for every grid value: a readable configuration name.

    ``varying``: of ``backbone`` and ``head``, those that differ between runs of the same model name (a
    grid over ``backbone.name``), named too. Ensemble rows end in ``[seeds]`` (the mean of a
    configuration's seeds) or ``[ensemble]``.
    """
    ensemble = row.get("ensemble")
    named = [f"{c}={row[c]}" for c in varying if c in row and not _empty(row[c])
             and (_empty(ensemble) or ensemble == "seeds")]
    grid = [f"{c}={row[c]}" for c in columns if c not in FIXED_COLUMNS and not _empty(row[c])]
    split = [] if row.get("split", "official") == "official" else [str(row["split"])]
    kind = [] if _empty(ensemble) else ["[seeds]" if ensemble == "seeds" else "[ensemble]"]
    return " ".join([str(row["model"])] + named + grid + split + kind)


def config_labels(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.Series:
    """The configuration label of every row of ``frame`` (distinct for distinct configurations)."""
    columns = config_columns(frame) if columns is None else columns
    if frame.empty:
        return pd.Series(dtype=str)
    runs = frame[frame["ensemble"].apply(_empty)] if "ensemble" in frame else frame
    varying = tuple(c for c in ("backbone", "head") if c in runs and (runs.groupby("model")[c].nunique() > 1).any())
    return frame.apply(lambda r: config_label(r, columns, varying), axis=1)


def _empty(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value == ""


def aggregate_runs(frame: pd.DataFrame, splits=("valid", "test"), metrics=CORE_METRICS) -> pd.DataFrame:
    """Mean, std and 95% t-interval of each split metric per configuration (finished runs only)."""
    ok = frame[frame.get("status", pd.Series(dtype=str)) == "ok"]
    if ok.empty:
        return pd.DataFrame()
    columns = config_columns(ok)
    labels = config_labels(ok, columns)
    rows = []
    for _, group in ok.groupby(columns, dropna=False, sort=False):
        first = group.iloc[0]
        row = {c: first[c] for c in columns}
        row["config"] = labels[group.index[0]]
        row["runs"] = len(group)
        row["seeds"] = ",".join(str(int(s)) for s in sorted(group["seed"].dropna().unique()))
        for split in splits:
            for metric in metrics:
                col = f"{split}_{metric}"
                if col not in group:
                    continue
                values = pd.to_numeric(group[col], errors="coerce").dropna().to_numpy()
                mean, std, lo, hi = t_interval(values)
                row.update({f"{col}_mean": mean, f"{col}_std": std, f"{col}_lo": lo, f"{col}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def add_significance(aggregated: pd.DataFrame, frame: pd.DataFrame, out_dir: Path, reference: str,
                     metric_column: str, n_resamples: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Add ``p_value``, ``delta`` and ``significance`` of each configuration against ``reference``.

    The paired bootstrap resamples the same test images for both configurations, per replicate
    (seed and fold) they share; with two or more shared seeds ``p_wilcoxon`` compares the
    per-seed values too. ``reference`` is a configuration label or a model name (of single runs).
    An ensemble (no seed of its own) is paired with every reference run of its fold.
    """
    split, metric = metric_column.split("_", 1)[0], metric_of(metric_column)
    ok = frame[frame["status"] == "ok"]
    labels = config_labels(ok)
    ensembles = ok.apply(is_ensemble, axis=1) if not ok.empty else pd.Series(dtype=bool)
    ref_rows = ok[labels == reference]
    if ref_rows.empty:  # a model name, for single runs
        ref_rows = ok[(ok["model"] == reference) & ~ensembles]
    aggregated = aggregated.copy()
    for col in ("delta", "p_value", "significance", "p_wilcoxon"):
        aggregated[col] = np.nan if col != "significance" else ""
    if ref_rows.empty or labels[ref_rows.index].nunique() != 1:
        aggregated["significance"] = f"reference {reference!r} not found (or not unique)"
        return aggregated
    ref_label = labels[ref_rows.index[0]]
    num_classes = int(ok["num_classes"].dropna().iloc[0]) if "num_classes" in ok else None
    for i, agg in aggregated.iterrows():
        if agg["config"] == ref_label:
            aggregated.at[i, "significance"] = "reference"
            continue
        runs = ok[labels == agg["config"]]
        pairs = [(r, ref) for _, r in runs.iterrows() for _, ref in ref_rows.iterrows() if _same_replicate(r, ref)]
        if not pairs or num_classes is None:
            continue
        if metric not in CORE_METRICS:
            aggregated.at[i, "significance"] = f"no paired bootstrap for {metric} (only {', '.join(CORE_METRICS)})"
        else:
            test = _paired_test([predictions_path(out_dir, a, split) for a, _ in pairs],
                                [predictions_path(out_dir, b, split) for _, b in pairs],
                                metric, num_classes, n_resamples, seed)
            aggregated.at[i, "delta"] = test["delta"]
            aggregated.at[i, "p_value"] = test["p_value"]
            aggregated.at[i, "significance"] = significance_marker(test["p_value"])
        if len(pairs) >= 2 and not any(is_ensemble(a) or is_ensemble(b) for a, b in pairs):
            aggregated.at[i, "p_wilcoxon"] = wilcoxon_seeds([a[metric_column] for a, _ in pairs],
                                                            [b[metric_column] for _, b in pairs])
    return aggregated


def _same_replicate(a: pd.Series, b: pd.Series) -> bool:
    """Same split strategy and fold, and the same seed unless one of them is an ensemble (no seed)."""
    if a["split"] != b["split"] or _fold(a) != _fold(b):
        return False
    return _empty(a["seed"]) or _empty(b["seed"]) or int(a["seed"]) == int(b["seed"])


def _fold(row: pd.Series) -> int | None:
    fold = row.get("fold")
    return None if fold is None or pd.isna(fold) else int(fold)


_PAIRED: dict[tuple, dict] = {}


def _paired_test(paths_a: list[Path], paths_b: list[Path], metric: str, num_classes: int, n_resamples: int,
                 seed: int) -> dict:
    """The paired bootstrap of two configurations' prediction files, computed once per version of the files
    (the leaderboard is rebuilt after every run; only the tests whose files changed run again)."""
    key = (tuple(map(run_folder.file_version, paths_a)), tuple(map(run_folder.file_version, paths_b)), metric,
           num_classes, n_resamples, seed)
    if key not in _PAIRED:
        replicates_a, _ = _replicates(paths_a)
        replicates_b, test_sets = _replicates(paths_b)
        _PAIRED[key] = paired_bootstrap_replicates(replicates_a, replicates_b, metric, num_classes, n_resamples,
                                                   seed, test_sets=test_sets)
    return _PAIRED[key]


def _replicates(paths: list[Path]) -> tuple[list, list[tuple[str, ...]]]:
    """``(target, pred, score)`` of each predictions file, and the images each covers (replicates on the same
    images share a bootstrap draw)."""
    frames = [run_folder.read_table(path) for path in paths]
    return ([(f["target"].to_numpy(), f["pred"].to_numpy(), f["score"].to_numpy()) for f in frames],
            [tuple(f["image"].astype(str)) for f in frames])


def with_ensembles(frame: pd.DataFrame, out_dir: Path, evaluation) -> pd.DataFrame:
    """The runs' rows and, after them, the rows of ``evaluation.ensembles`` built from their predictions."""
    if not getattr(evaluation, "ensembles", None) or frame.empty or "status" not in frame:
        return frame
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return frame
    columns = config_columns(ok)
    ensembles = ensemble_rows(out_dir, ok, evaluation, columns, config_labels(ok, columns))
    return pd.concat([frame, ensembles], ignore_index=True) if not ensembles.empty else frame


def grid_pivot(aggregated: pd.DataFrame, frame: pd.DataFrame, value_column: str) -> pd.DataFrame | None:
    """For a two-key grid: rows = first key (per model when there are several), columns = second key,
    cells = the configuration's mean of ``value_column``; ensembles left out."""
    grid = [c for c in config_columns(frame) if c not in FIXED_COLUMNS]
    mean_col = f"{value_column}_mean"
    if len(grid) != 2 or aggregated.empty or mean_col not in aggregated:
        return None
    runs = aggregated[aggregated["ensemble"].apply(_empty)] if "ensemble" in aggregated else aggregated
    index = ["model", grid[0]] if runs["model"].nunique() > 1 else grid[0]
    return runs.pivot_table(index=index, columns=grid[1], values=mean_col, aggfunc="mean")


def sort_aggregated(aggregated: pd.DataFrame, metric_column: str) -> pd.DataFrame:
    col = f"{metric_column}_mean"
    if col not in aggregated:
        return aggregated
    ascending = not HIGHER_IS_BETTER.get(metric_of(metric_column), True)
    return aggregated.sort_values(col, ascending=ascending, na_position="last").reset_index(drop=True)


def summary_views(frame: pd.DataFrame, out_dir: Path, evaluation) -> dict[str, pd.DataFrame]:
    """The aggregated view (several runs per configuration, or a reference) and the two-key grid pivot.

    Written as ``leaderboard_aggregated.csv`` / ``leaderboard_pivot.csv`` and returned as extra
    workbook sheets.
    """
    from benchkit.io import atomic_path
    sheets = _summary_sheets(frame, out_dir, evaluation)
    for name in results_folder.SUMMARY_FILES:
        path = results_folder.summary_path(out_dir, name)
        if name not in sheets:
            path.unlink(missing_ok=True)  # a view an earlier refresh wrote and this one no longer has
            continue
        with atomic_path(path) as tmp:
            sheets[name].to_csv(tmp, index=name == "pivot")
    return sheets


def _summary_sheets(frame: pd.DataFrame, out_dir: Path, evaluation) -> dict[str, pd.DataFrame]:
    sheets: dict[str, pd.DataFrame] = {}
    if frame.empty or "status" not in frame:
        return sheets
    aggregated = aggregate_runs(frame)
    if aggregated.empty:
        return sheets
    if evaluation.reference:
        aggregated = add_significance(aggregated, frame, out_dir, evaluation.reference, evaluation.sort_by,
                                      evaluation.bootstrap.n_resamples or 1000, evaluation.bootstrap.seed)
    aggregated = sort_aggregated(aggregated, evaluation.sort_by)
    if aggregated["runs"].max() > 1 or evaluation.reference:
        sheets["aggregated"] = aggregated
    pivot = grid_pivot(aggregated, frame, evaluation.sort_by)
    if pivot is not None:
        sheets["pivot"] = pivot
    return sheets


def aggregated_table(aggregated: pd.DataFrame, title: str, split: str = "test",
                     metrics=("acc", "mae", "qwk")):
    """Rich table of the aggregated view: mean ± std [95% CI] per metric, and the test columns."""
    from rich.table import Table
    table = Table(title=title, header_style="bold cyan")
    table.add_column("config")
    table.add_column("runs", justify="right")
    shown = [m for m in metrics if f"{split}_{m}_mean" in aggregated]
    for m in shown:
        table.add_column(f"{split} {m} mean ± std [95% CI]", justify="right")
    has_test = "p_value" in aggregated
    if has_test:
        table.add_column("delta", justify="right")
        table.add_column("p", justify="right")
        table.add_column("sig")
    for _, row in aggregated.iterrows():
        cells = [str(row["config"]), str(row["runs"])]
        for m in shown:
            mean, std = row[f"{split}_{m}_mean"], row[f"{split}_{m}_std"]
            lo, hi = row[f"{split}_{m}_lo"], row[f"{split}_{m}_hi"]
            text = f"{mean:.3f}" + ("" if pd.isna(std) else f" ± {std:.3f} [{lo:.3f}, {hi:.3f}]")
            cells.append(text)
        if has_test:
            cells += ["" if pd.isna(row["delta"]) else f"{row['delta']:+.3f}",
                      "" if pd.isna(row["p_value"]) else f"{row['p_value']:.4f}", str(row["significance"])]
        table.add_row(*cells)
    return table
