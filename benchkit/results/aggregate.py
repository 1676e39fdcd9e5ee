"""Across seeds and folds: one row per configuration, and paired tests against a reference.

A configuration is everything that identifies a run except its seed and fold (model, backbone,
head, split strategy, grid values, and for ensemble rows the ensemble). Its aggregated row gives, for each metric, the mean and std
over its runs and a 95% t-interval of that mean; the significance columns compare it with the
reference configuration named in ``evaluation.reference`` on the same test images, and ``best_group``
marks the configurations not significantly worse than the best (both Holm-adjusted over the configurations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchkit.config.schema import EVALUATED_SPLITS
from benchkit.results import results_folder
from benchkit.results.leaderboard import grid_columns, metric_of
from benchkit.results.ensembles import ensemble_rows, is_ensemble
from benchkit.results.paired_tests import compare_with, not_worse
from benchkit.results.ranks import rank_table, rankings
from benchkit.evaluation.metrics import CORE_METRICS, HIGHER_IS_BETTER
from benchkit.evaluation.significance import significance_marker, t_interval

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


def aggregate_runs(frame: pd.DataFrame, splits=EVALUATED_SPLITS, metrics=CORE_METRICS) -> pd.DataFrame:
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
    """Add each configuration's paired tests against ``reference``
    (:func:`~benchkit.results.paired_tests.compare_with`): ``delta``, ``p_value``, its Holm-adjusted twin
    ``p_holm`` over the configurations tested, ``significance`` (the marker of ``p_holm``: ``*** ** * ns``), and
    with two or more shared seeds ``p_wilcoxon`` and ``p_wilcoxon_holm``. ``reference`` is a configuration label
    or a model name (of single runs).
    """
    ok = frame[frame["status"] == "ok"]
    labels = config_labels(ok)
    ensembles = ok.apply(is_ensemble, axis=1) if not ok.empty else pd.Series(dtype=bool)
    ref_rows = ok[labels == reference]
    if ref_rows.empty:  # a model name, for single runs
        ref_rows = ok[(ok["model"] == reference) & ~ensembles]
    aggregated = aggregated.copy()
    for col in REFERENCE_COLUMNS:
        aggregated[col] = np.nan if col != "significance" else ""
    if ref_rows.empty or labels[ref_rows.index].nunique() != 1:
        aggregated["significance"] = f"reference {reference!r} not found (or not unique)"
        return aggregated
    ref_label = labels[ref_rows.index[0]]
    tests = compare_with(aggregated, ok, labels, ref_label, metric_column, out_dir, n_resamples, seed)
    for col in REFERENCE_COLUMNS[:-1]:
        aggregated[col] = tests[col]
    tested = tests["p_value"].notna()
    aggregated["significance"] = tests["note"].where(~tested, tests["p_holm"].map(significance_marker))
    aggregated.loc[aggregated["config"] == ref_label, "significance"] = "reference"
    return aggregated


REFERENCE_COLUMNS = ("delta", "p_value", "p_holm", "p_wilcoxon", "p_wilcoxon_holm", "significance")
BEST_GROUP_COLUMNS = ("delta_vs_best", "p_vs_best", "p_vs_best_holm", "best_group")


def add_best_group(aggregated: pd.DataFrame, frame: pd.DataFrame, out_dir: Path, metric_column: str,
                   n_resamples: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Mark the configurations not significantly worse than the best by ``metric_column``.

    The best is the configuration with the best mean of ``metric_column`` (ties: the first in ``aggregated``);
    every other one is compared with it by the paired bootstrap on the images they share (``delta_vs_best``,
    ``p_vs_best``), Holm-adjusted over the family of those comparisons (``p_vs_best_holm``). ``best_group`` is
    False for a configuration worse than the best with ``p_vs_best_holm < 0.05``, True for the best and every other
    one, empty where no paired test was possible.
    """
    aggregated = aggregated.copy()
    for col in BEST_GROUP_COLUMNS:
        aggregated[col] = np.nan if col != "best_group" else None
    if f"{metric_column}_mean" not in aggregated:
        return aggregated
    mean = pd.to_numeric(aggregated[f"{metric_column}_mean"], errors="coerce")
    if mean.isna().all():
        return aggregated
    higher = HIGHER_IS_BETTER.get(metric_of(metric_column), True)
    best = aggregated.at[mean.idxmax() if higher else mean.idxmin(), "config"]
    ok = frame[frame["status"] == "ok"]
    tests = compare_with(aggregated, ok, config_labels(ok), best, metric_column, out_dir, n_resamples, seed)
    aggregated["delta_vs_best"], aggregated["p_vs_best"] = tests["delta"], tests["p_value"]
    aggregated["p_vs_best_holm"] = tests["p_holm"]
    aggregated["best_group"] = not_worse(tests, metric_column)
    aggregated.loc[aggregated["config"] == best, "best_group"] = True
    return aggregated


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
    """The aggregated view (several configurations, several runs per configuration, or a reference), the
    two-key grid pivot, and the rank view (:mod:`benchkit.results.ranks`, several blocks of three or more
    configurations).

    Written as ``leaderboard_aggregated.csv`` / ``leaderboard_pivot.csv`` / ``leaderboard_ranks.csv`` and
    returned as extra workbook sheets.
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
    n_resamples, seed = evaluation.bootstrap.n_resamples or 1000, evaluation.bootstrap.seed
    if evaluation.reference:
        aggregated = add_significance(aggregated, frame, out_dir, evaluation.reference, evaluation.sort_by,
                                      n_resamples, seed)
    aggregated = sort_aggregated(aggregated, evaluation.sort_by)
    if len(aggregated) > 1:
        aggregated = add_best_group(aggregated, frame, out_dir, evaluation.sort_by, n_resamples, seed)
    if aggregated["runs"].max() > 1 or evaluation.reference or len(aggregated) > 1:
        sheets["aggregated"] = aggregated
    pivot = grid_pivot(aggregated, frame, evaluation.sort_by)
    if pivot is not None:
        sheets["pivot"] = pivot
    ok = frame[frame["status"] == "ok"]
    ranks = rank_table(rankings(ok, config_labels(ok), evaluation.sort_by))
    if not ranks.empty:
        sheets["ranks"] = ranks
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
        table.add_column("p (Holm)", justify="right")
        table.add_column("sig")
    has_group = "best_group" in aggregated
    if has_group:
        table.add_column("best group")
    for _, row in aggregated.iterrows():
        cells = [str(row["config"]), str(row["runs"])]
        for m in shown:
            mean, std = row[f"{split}_{m}_mean"], row[f"{split}_{m}_std"]
            lo, hi = row[f"{split}_{m}_lo"], row[f"{split}_{m}_hi"]
            text = f"{mean:.3f}" + ("" if pd.isna(std) else f" ± {std:.3f} [{lo:.3f}, {hi:.3f}]")
            cells.append(text)
        if has_test:
            cells += ["" if pd.isna(row["delta"]) else f"{row['delta']:+.3f}",
                      "" if pd.isna(row["p_holm"]) else f"{row['p_holm']:.4f}", str(row["significance"])]
        if has_group:
            cells.append({True: "yes", False: "no"}.get(row["best_group"], ""))
        table.add_row(*cells)
    return table
