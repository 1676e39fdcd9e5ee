"""The leaderboard: one flat row per run, merged from the run folders, written as CSV, xlsx and a table.

Rows are read back from each ``runs/<run_id>/metrics.json``, so several processes can fill one
output folder and a rebuilt leaderboard never loses or duplicates a run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.table import Table

from benchkit.config.schema import EVALUATED_SPLITS, strategy_of
from benchkit.errors import ConfigError
from benchkit.io import atomic_path
from benchkit.results import results_folder, run_folder
from benchkit.results.workbook import write_workbook
from benchkit.evaluation.metrics import HIGHER_IS_BETTER

ID_COLUMNS = ["run_id", "model", "backbone", "head", "seed", "split", "fold", "ensemble"]
TAIL_COLUMNS = ["params_total", "params_trainable", "params_frozen", "epochs", "best_epoch",
                "train_seconds", "wall_seconds", "peak_gpu_mb", "peak_rss_mb", "skipped_steps", "input_size",
                "num_classes", "weights_source", "weights_skipped", "device", "host", "ray_node", "tta", "members",
                "member_runs", "status", "error"]
TUNING_COLUMNS = ("tuning_budget", "tuning_trials")
"""With ``tuning:``: the trials per configuration and those finished; ``tuned_<param>`` the best values found."""


def collect_rows(out_dir: str | Path) -> pd.DataFrame:
    """Every run's row from ``out_dir/runs/*/metrics.json`` (unfinished runs are left out)."""
    rows = []
    for path in sorted(results_folder.runs_dir(out_dir).glob(f"*/{run_folder.METRICS}")):
        try:
            row = run_folder.read_row(path.parent)
            if row is None:
                raise KeyError("row")
            rows.append(_renamed_if_scored_before_level_mae({**row, "split": strategy_of(row.get("split"))}
                                                            if "split" in row else row))
        except (ValueError, KeyError, AttributeError) as exc:
            rows.append({"run_id": path.parent.name, "status": "failed",
                         "error": f"unreadable metrics.json: {exc}"})
    return pd.DataFrame(rows)


_LEVEL_ERRORS = ("mae", "mape", "amae", "max_mae")


def _renamed_if_scored_before_level_mae(row: dict) -> dict:
    """A row scored when ``mae`` was the error of the continuous score (it has ``<split>_mae`` but no
    ``<split>_score_mae``): its MAE columns become ``score_mae`` and the level errors it never computed are left
    out, so one leaderboard never shows two meanings under one name (``benchkit run --fresh`` scores it anew)."""
    splits = [split for split in EVALUATED_SPLITS if f"{split}_mae" in row]
    if not splits or any(f"{split}_score_mae" in row for split in splits):
        return row
    renamed = {}
    for column, value in row.items():
        split, metric = _split_of(column), metric_of(column)
        if split in splits and column in (f"{split}_mae", f"{split}_mae_lo", f"{split}_mae_hi"):
            renamed[column.replace("_mae", "_score_mae", 1)] = value
        elif not (split in splits and metric in _LEVEL_ERRORS):
            renamed[column] = value
    return renamed


def require_run_results(out_dir: str | Path) -> Path:
    """``out_dir`` if it is a results folder with at least one run that has a result (finished or failed); a
    ConfigError saying there is nothing to tabulate otherwise, instead of an empty table."""
    results_folder.require_results_folder(out_dir)
    if not any(results_folder.runs_dir(out_dir).glob(f"*/{run_folder.METRICS}")):
        raise ConfigError(f"{out_dir}: no run has finished yet (no {results_folder.RUNS}/*/{run_folder.METRICS}); "
                          f"nothing to tabulate until the first run ends")
    return Path(out_dir)


def grid_columns(frame: pd.DataFrame) -> list[str]:
    """The grid-value columns of a leaderboard: every column that is not identity, bookkeeping or a metric."""
    return [c for c in frame if c not in ID_COLUMNS + TAIL_COLUMNS and _split_of(c) is None
            and not is_tuning_column(c)]


def is_tuning_column(column: str) -> bool:
    """A column that says how a run was tuned (a result of the tuning, not a grid value)."""
    return column in TUNING_COLUMNS or str(column).startswith("tuned_")


def tuning_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame if is_tuning_column(c)]


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Identity, grid values, split metrics (value, lo, hi), then bookkeeping columns."""
    first = [c for c in ID_COLUMNS if c in frame]
    tail = [c for c in TAIL_COLUMNS if c in frame]
    metric_cols = [c for c in frame if _split_of(c)]
    return frame[first + grid_columns(frame) + tuning_columns(frame) + metric_cols + tail]


def sort_rows(frame: pd.DataFrame, sort_by: str) -> pd.DataFrame:
    """Sort by a metric column, best first; failed runs last."""
    if frame.empty or sort_by not in frame:
        return frame.reset_index(drop=True)
    ascending = not HIGHER_IS_BETTER.get(metric_of(sort_by), True)
    return frame.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def build_leaderboard(out_dir: str | Path, sort_by: str = "test_mae") -> pd.DataFrame:
    return sort_rows(order_columns(collect_rows(out_dir)), sort_by)


def write_leaderboard(frame: pd.DataFrame, out_dir: str | Path, xlsx_path: str | Path | None = None,
                      config_text: str | None = None, extra_sheets: dict[str, pd.DataFrame] | None = None) -> None:
    """``leaderboard.csv`` and ``leaderboard.xlsx`` in ``out_dir`` (atomically)."""
    with atomic_path(results_folder.leaderboard_path(out_dir)) as tmp:
        frame.to_csv(tmp, index=False)
    write_xlsx(frame, xlsx_path or results_folder.workbook_path(out_dir), config_text, extra_sheets or {})


def write_xlsx(frame: pd.DataFrame, path: str | Path, config_text: str | None = None,
               extra_sheets: dict[str, pd.DataFrame] | None = None) -> None:
    """The workbook (:mod:`benchkit.results.workbook`): one sheet per split (identity, grid values, that split's
    metrics, bookkeeping), the extra sheets, and the config."""
    splits = sorted({_split_of(c) for c in frame if _split_of(c)}, key=EVALUATED_SPLITS.index) or ["all"]
    sheets = {}
    for split in splits:
        cols = [c for c in frame if c in ID_COLUMNS or (_split_of(c) is None and c not in TAIL_COLUMNS)]
        cols += [c for c in frame if _split_of(c) == split] + [c for c in TAIL_COLUMNS if c in frame]
        sheets[split] = frame[cols]
    sheets.update({name: sheet.reset_index(drop=isinstance(sheet.index, pd.RangeIndex))  # no "index" column
                   for name, sheet in (extra_sheets or {}).items()})
    write_workbook(sheets, path, metric_direction, config_text)


def metric_direction(column: str) -> bool | None:
    """Whether higher is better in a metric column (``test_qwk`` -> True, ``test_mae`` -> False); None for others."""
    return HIGHER_IS_BETTER.get(metric_of(column))


def _split_of(column: str) -> str | None:
    head, _, rest = str(column).partition("_")
    return head if head in EVALUATED_SPLITS and rest else None


def metric_of(column: str) -> str:
    """``test_qwk_lo`` -> ``qwk``; ``test_acc__expected`` -> ``acc``."""
    name = str(column).split("__")[0]
    parts = name.split("_")
    if parts and parts[0] in EVALUATED_SPLITS:
        parts = parts[1:]
    if parts and parts[-1] in ("lo", "hi"):
        parts = parts[:-1]
    return "_".join(parts)


def rich_table(frame: pd.DataFrame, title: str, metrics: tuple[str, ...] = ("acc", "mae", "qwk"),
               split: str = "test") -> Table:
    """A compact terminal view: identity, grid values, metrics with intervals, status."""
    table = Table(title=title, header_style="bold cyan")
    cols = ["run_id"] + grid_columns(frame) + tuning_columns(frame)
    for col in cols:
        table.add_column(col, overflow="fold")
    shown = [m for m in metrics if f"{split}_{m}" in frame]
    for m in shown:
        table.add_column(f"{split} {m} [95% CI]", justify="right")
    table.add_column("status")
    for _, row in frame.iterrows():
        cells = [str(row.get(c, "")) for c in cols]
        for m in shown:
            cells.append(_with_interval(row, f"{split}_{m}"))
        status = str(row.get("status", ""))
        cells.append(status if status == "ok" else f"[red]{status}[/] {str(row.get('error', ''))[:60]}")
        table.add_row(*cells)
    return table


def _with_interval(row, col: str) -> str:
    value = row.get(col)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"
