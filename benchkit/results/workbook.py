"""``leaderboard.xlsx``: the leaderboard as a workbook people can read.

One sheet per split (identity, grid values, that split's metrics, bookkeeping), the summary views
(aggregated, pivot, ranks) and the experiment's config. Every table sheet has a header row with an
autofilter, frozen panes, columns as wide as their content (at most :data:`MAX_WIDTH` characters), numbers at
a precision that suits the column (:func:`number_format`), each metric's interval columns (``_lo``, ``_hi``)
right beside it and grouped in an outline, so they can be folded away, and the best value of each metric
column (a run's ``test_qwk``, a configuration's ``test_qwk_mean``) highlighted. The ``config`` sheet is the
experiment's text, one line a row: no table, no filter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from benchkit.io import atomic_path

MAX_WIDTH = 60
"""Widest a column gets, in characters (longer text is cut off on screen, not in the cell)."""
MIN_WIDTH = 6
FILTER_BUTTON = 2
"""Characters the autofilter's drop-down button covers at the right of a header cell."""
INTERVAL_SUFFIXES = ("_lo", "_hi")
Direction = Callable[[str], Optional[bool]]
"""Whether higher is better in a column (None: not a metric column)."""
_HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
_BEST_FILL = PatternFill("solid", fgColor="C6EFCE")


def write_workbook(sheets: dict[str, pd.DataFrame], path: str | Path, direction: Direction,
                   config_text: str | None = None) -> None:
    """Each frame of ``sheets`` as a table sheet (:func:`write_sheet`), then ``config_text`` as a ``config``
    sheet of plain lines; written atomically. ``direction(column)`` says whether higher is better in a metric
    column (None for other columns)."""
    wb = Workbook()
    wb.remove(wb.active)
    for name, frame in sheets.items():
        write_sheet(wb.create_sheet(name[:31]), frame, direction)
    if config_text is not None:
        ws = wb.create_sheet("config")
        for i, line in enumerate(config_text.splitlines(), start=1):
            ws.cell(row=i, column=1, value=line).font = Font(name="Consolas")
        ws.column_dimensions["A"].width = 100
    with atomic_path(path) as tmp:
        wb.save(tmp)


def write_sheet(ws, frame: pd.DataFrame, direction: Direction) -> None:
    """``frame`` as a table: styled header, autofilter, frozen panes, sized columns, number formats,
    intervals beside and grouped under their metric, best values highlighted."""
    frame = intervals_beside_metrics(frame)
    for j, col in enumerate(frame.columns, start=1):
        cell = ws.cell(row=1, column=j, value=str(col))
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
    formats = {col: number_format(str(col), frame[col], _metric_direction(str(col), direction) is not None)
               for col in frame.columns}
    for i, record in enumerate(frame.itertuples(index=False), start=2):
        for j, (col, value) in enumerate(zip(frame.columns, record), start=1):
            cell = ws.cell(row=i, column=j, value=_cell_value(value))
            if formats[col] and isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool):
                cell.number_format = formats[col]
    for j, col in enumerate(frame.columns, start=1):
        letter = get_column_letter(j)
        ws.column_dimensions[letter].width = column_width(str(col), frame[col], formats[col])
    _group_intervals(ws, [str(c) for c in frame.columns])
    _highlight_best(ws, frame, direction)
    ws.auto_filter.ref = f"A1:{get_column_letter(max(1, len(frame.columns)))}{len(frame) + 1}"
    ws.freeze_panes = "B2"


def intervals_beside_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns reordered so that each ``X_lo``, ``X_hi`` follows ``X`` (or ``X_mean`` and ``X_std``);
    everything else keeps its order."""
    names = [str(c) for c in frame.columns]
    placed: list[str] = []
    for name in names:
        if name in placed or (name.endswith(INTERVAL_SUFFIXES) and _parent(name, names)):
            continue
        placed.append(name)
        base = name[:-len("_mean")] if name.endswith("_mean") else name
        placed += [f"{base}{suffix}" for suffix in ("_std", *INTERVAL_SUFFIXES)
                   if f"{base}{suffix}" in names and f"{base}{suffix}" not in placed and f"{base}{suffix}" != name]
    return frame[[c for name in placed for c in frame.columns if str(c) == name]]


def number_format(column: str, values: pd.Series, is_metric: bool = False) -> str | None:
    """The Excel number format of a numeric column (None for text): parameter counts with thousands
    separators, other whole numbers (seeds, folds, epochs, sizes) as such, p-values to 4 decimals, seconds
    and megabytes to 1, metrics (with their means, spreads and intervals) to 3; other fractions to 3 unless
    that would hide them (a learning rate of 3e-4): those keep Excel's General format."""
    numeric = pd.to_numeric(values, errors="coerce").dropna()
    if numeric.empty or len(numeric) < values.notna().sum() or pd.api.types.is_bool_dtype(values):
        return None
    if column.startswith("params"):
        return "#,##0"
    if (numeric == numeric.round()).all() and (pd.api.types.is_integer_dtype(values) or not is_metric):
        return "0"
    if "p" in column.split("_"):
        return "0.0000"
    if column.endswith(("seconds", "_mb")):
        return "0.0"
    if not is_metric and ((numeric - numeric.round(3)).abs() > 0.01 * numeric.abs()).any():
        return "General"
    return "0.000"


def column_width(column: str, values: pd.Series, fmt: str | None) -> float:
    """Characters the widest of the header (beside its filter button) and the values needs (as formatted),
    plus a margin, capped."""
    shown = [_shown(v, fmt) for v in values]
    widest = max([len(column) + FILTER_BUTTON] + [len(text) for text in shown])
    return float(min(MAX_WIDTH, max(MIN_WIDTH, widest + 2)))


def _shown(value, fmt: str | None) -> str:
    value = _cell_value(value)
    if value is None:
        return ""
    if fmt and fmt != "General" and isinstance(value, (int, float)) and not isinstance(value, bool):
        decimals = len(fmt.split(".")[1]) if "." in fmt else 0
        return f"{value:,.{decimals}f}" if "," in fmt else f"{value:.{decimals}f}"
    return str(value)


def _metric_direction(column: str, direction: Direction) -> bool | None:
    """The direction of the metric a column reports: its own, or (for ``X_mean``, ``X_std``, ``X_lo``,
    ``X_hi``) that of ``X``."""
    own = direction(column)
    if own is not None:
        return own
    for suffix in ("_mean", "_std", *INTERVAL_SUFFIXES):
        if column.endswith(suffix):
            return direction(column[:-len(suffix)])
    return None


def _best_direction(column: str, direction: Direction) -> bool | None:
    """Whether to highlight the highest (True) or lowest (False) value of a column: a metric's value or a
    configuration's mean, never its spread or interval bounds; None for other columns."""
    if column.endswith((*INTERVAL_SUFFIXES, "_std")):
        return None
    return _metric_direction(column, direction)


def _parent(name: str, names: list[str]) -> str | None:
    base = name[:-3]
    return next((p for p in (base, f"{base}_mean") if p in names), None)


def _group_intervals(ws, names: list[str]) -> None:
    """Interval columns (``_lo``, ``_hi``) sit one outline level down, beside their metric: Excel's outline
    buttons fold them away and back."""
    for j, name in enumerate(names, start=1):
        if name.endswith(INTERVAL_SUFFIXES):
            ws.column_dimensions[get_column_letter(j)].outline_level = 1


def _highlight_best(ws, frame: pd.DataFrame, direction: Direction) -> None:
    if len(frame) < 2:
        return
    for j, col in enumerate(frame.columns, start=1):
        higher = _best_direction(str(col), direction)
        if higher is None:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.notna().any():
            best = values.max() if higher else values.min()
            for i, v in enumerate(values, start=2):
                if v == best:
                    ws.cell(row=i, column=j).fill = _BEST_FILL
                    ws.cell(row=i, column=j).font = Font(bold=True)


def _cell_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
