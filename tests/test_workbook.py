"""``leaderboard.xlsx`` read back with openpyxl: a workbook people can read (issue 26).

Columns as wide as their longest cell (run ids not cut) and capped for long text, an autofilter over header and
data on every table sheet, numbers at the precision of their kind, each metric's interval columns right beside
it, and the best value of each metric column (and only it) highlighted. :func:`assert_readable` is the check;
tests/test_experiment.py and tests/test_aggregate.py run it on workbooks of real experiments too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from benchkit.results.aggregate import aggregate_runs, config_labels
from benchkit.results.leaderboard import metric_direction, order_columns, sort_rows, write_leaderboard
from benchkit.results.ranks import rank_table, rankings
from benchkit.results.workbook import MAX_WIDTH

BEST = "C6EFCE"
TEXT_SHEETS = ("config",)
"""Sheets of plain lines (the experiment's YAML), not tables: no filter, one wide column."""
FILTER_BUTTON = 2


def metric_of_column(column: str) -> tuple[str, bool | None]:
    """(the metric column a column reports on, whether higher is better there; None: not a metric)."""
    for suffix in ("_mean", "_std", "_lo", "_hi"):
        if column.endswith(suffix) and metric_direction(column[:-len(suffix)]) is not None:
            return column[:-len(suffix)], metric_direction(column[:-len(suffix)])
    return column, metric_direction(column)


def shown(value, fmt: str) -> str:
    """The text Excel shows for a cell of format ``fmt`` (the formats the workbook uses)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or fmt == "General":
        return str(value)
    decimals = len(fmt.split(".")[1]) if "." in fmt else 0
    return f"{value:,.{decimals}f}" if "," in fmt else f"{value:.{decimals}f}"


def columns(ws) -> dict[str, list]:
    """Header -> the column's cells below it."""
    return {str(ws.cell(row=1, column=j).value): [ws.cell(row=i, column=j) for i in range(2, ws.max_row + 1)]
            for j in range(1, ws.max_column + 1)}


def is_best(cell) -> bool:
    return str(cell.fill.fgColor.rgb).endswith(BEST)


def assert_readable(wb) -> None:
    """Every table sheet of ``wb`` is readable (the promises of :mod:`benchkit.results.workbook`)."""
    tables = [ws for ws in wb.worksheets if ws.title not in TEXT_SHEETS]
    assert tables
    for ws in tables:
        last = get_column_letter(ws.max_column)
        assert ws.auto_filter.ref == f"A1:{last}{ws.max_row}", (ws.title, ws.auto_filter.ref)
        assert ws.freeze_panes == "B2", ws.title
        header = [str(c.value) for c in ws[1]]
        for j, (name, cells) in enumerate(columns(ws).items(), start=1):
            letter = get_column_letter(j)
            width = ws.column_dimensions[letter].width
            needed = max([len(name) + FILTER_BUTTON] + [len(shown(c.value, c.number_format)) for c in cells])
            assert min(needed, MAX_WIDTH) <= width <= min(needed + 4, MAX_WIDTH), (ws.title, name, width, needed)
            _assert_interval_beside_metric(ws.title, header, j - 1, ws.column_dimensions[letter].outline_level)
            _assert_best_highlighted(ws.title, name, cells)
            metric, _ = metric_of_column(name)
            if metric_direction(metric) is not None:  # a metric (value, mean, spread, bounds): 3 decimals
                numbers = [c for c in cells if isinstance(c.value, (int, float)) and not isinstance(c.value, bool)]
                assert {c.number_format for c in numbers} <= {"0.000"}, (ws.title, name)
    for title in TEXT_SHEETS:
        if title in wb.sheetnames:
            assert wb[title].auto_filter.ref is None and wb[title].column_dimensions["A"].width >= 80


def _assert_interval_beside_metric(sheet: str, header: list[str], index: int, outline_level: int) -> None:
    name = header[index]
    metric, _ = metric_of_column(name)
    if name.endswith("_lo") and metric != name:
        before = header[index - 1]
        assert before in (metric, f"{metric}_std") and (before == metric or header[index - 2] == f"{metric}_mean"), \
            (sheet, name, header[index - 2:index + 1])
        assert outline_level == 1, (sheet, name)
    elif name.endswith("_hi") and metric != name:
        assert header[index - 1] == f"{metric}_lo", (sheet, name, header[index - 1])
        assert outline_level == 1, (sheet, name)
    else:
        assert outline_level == 0, (sheet, name)


def _assert_best_highlighted(sheet: str, name: str, cells) -> None:
    metric, higher = metric_of_column(name)
    highlighted = [c.row for c in cells if is_best(c)]
    values = {c.row: c.value for c in cells if isinstance(c.value, (int, float)) and not isinstance(c.value, bool)}
    if higher is None or name.endswith(("_std", "_lo", "_hi")) or len(cells) < 2 or not values:
        assert not highlighted, (sheet, name, highlighted)
        return
    best = (max if higher else min)(values.values())
    assert highlighted == [row for row, v in values.items() if v == best], (sheet, name, highlighted, values)
    assert all(c.font.bold for c in cells if is_best(c))


# ---------------------------------------------------------------- a realistic leaderboard through the writer

MODELS = ["tf_efficientnet_lite0-regression", "convnext_tiny-coral", "resnet18-corn"]
LONG_ERROR = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; "
              "12.10 GiB already allocated; 1.02 GiB free; 13.52 GiB reserved in total by PyTorch) while "
              "training epoch 3 of tf_efficientnet_lite0-regression__lr=0.0003__s1")


def realistic_board() -> pd.DataFrame:
    """Three models x two learning rates x two seeds, distinct scores, one failed run with a long error; the
    interval columns written apart from their metric (the workbook must bring them beside it)."""
    rng = np.random.default_rng(0)
    rows = []
    for m, model in enumerate(MODELS):
        backbone, head = model.split("-")
        for lr in (3e-4, 1e-3):
            for seed in (0, 1):
                qwk, mae = 0.55 + 0.1 * m + rng.uniform(0, 0.05), 0.9 - 0.1 * m + rng.uniform(0, 0.05)
                rows.append({"run_id": f"{model}__lr={lr:g}__s{seed}", "model": model, "backbone": backbone,
                             "head": head, "seed": seed, "split": "official", "lr": lr,
                             "test_qwk": qwk, "test_mae": mae, "test_off1": 1.0,
                             "test_acc": 0.4 + 0.1 * m + rng.uniform(0, 0.05),
                             "params_total": 4_652_008 * (m + 1), "epochs": 30, "best_epoch": int(rng.integers(5, 30)),
                             "train_seconds": 612.25 + 100 * m, "peak_rss_mb": 3210.5, "status": "ok",
                             "error": None, "test_qwk_lo": qwk - 0.08, "test_qwk_hi": qwk + 0.07,
                             "test_mae_lo": mae - 0.1, "test_mae_hi": mae + 0.12})
    rows.append({"run_id": f"{MODELS[0]}__lr=0.0003__s2", "model": MODELS[0], "backbone": "tf_efficientnet_lite0",
                 "head": "regression", "seed": 2, "split": "official", "lr": 3e-4, "status": "failed",
                 "error": LONG_ERROR})
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in frame if not c.endswith(("_lo", "_hi"))] + [c for c in frame if c.endswith("_hi")]
                  + [c for c in frame if c.endswith("_lo")]]
    return sort_rows(order_columns(frame), "test_mae")


@pytest.fixture(scope="module")
def workbook(tmp_path_factory):
    """The workbook benchkit writes for :func:`realistic_board`, with its aggregated and rank sheets."""
    out = tmp_path_factory.mktemp("workbook")
    (out / "runs").mkdir()
    frame = realistic_board()
    ok = frame[frame.status == "ok"]
    sheets = {"aggregated": aggregate_runs(frame), "ranks": rank_table(rankings(ok, config_labels(ok), "test_mae"))}
    assert not sheets["ranks"].empty
    write_leaderboard(frame, out, config_text="name: readable\nseeds: [0, 1]\n", extra_sheets=sheets)
    return load_workbook(out / "leaderboard.xlsx"), frame


def test_the_workbook_keeps_every_promise_on_every_sheet(workbook):
    wb, _ = workbook
    assert wb.sheetnames == ["test", "aggregated", "ranks", "config"]
    assert [wb[name].cell(row=1, column=1).value for name in wb.sheetnames[:3]] == ["run_id", "model", "split"]
    assert_readable(wb)


def test_run_ids_are_not_cut_and_long_text_is_capped(workbook):
    wb, frame = workbook
    ws = wb["test"]
    widths = {name: ws.column_dimensions[cells[0].column_letter].width for name, cells in columns(ws).items()}
    longest_id = max(frame.run_id, key=len)
    assert longest_id.startswith("tf_efficientnet_lite0-regression__lr=0.0003__s")
    assert len(longest_id) <= widths["run_id"] <= len(longest_id) + 4
    assert widths["error"] == MAX_WIDTH < len(LONG_ERROR)
    assert ws.cell(row=ws.max_row, column=list(widths).index("error") + 1).value == LONG_ERROR  # cut on screen only
    assert widths["seed"] < 10 < widths["params_total"] and len(set(widths.values())) > 5  # not one width for all


def test_numbers_are_shown_at_the_precision_of_their_kind(workbook):
    wb, _ = workbook
    expected = {
        "test": {"test_qwk": "0.000", "test_qwk_lo": "0.000", "test_off1": "0.000", "params_total": "#,##0",
                 "seed": "0", "epochs": "0", "best_epoch": "0", "train_seconds": "0.0", "peak_rss_mb": "0.0",
                 "lr": "General"},  # a learning rate of 3e-4 is not shown as 0.000
        "aggregated": {"test_qwk_mean": "0.000", "test_qwk_std": "0.000", "test_off1_std": "0.000",
                       "test_qwk_lo": "0.000", "runs": "0"},
        "ranks": {"friedman_p": "0.0000", "p_nemenyi_vs_top": "0.0000", "mean_rank": "0.000", "configs": "0"},
    }
    for sheet, formats in expected.items():
        cells = columns(wb[sheet])
        for name, fmt in formats.items():
            numbers = [c for c in cells[name] if c.value is not None]
            assert numbers and {c.number_format for c in numbers} == {fmt}, (sheet, name)
    assert {c.number_format for c in columns(wb["test"])["run_id"]} == {"General"}
    assert shown(3e-4, "General") == "0.0003" and shown(4_652_008, "#,##0") == "4,652,008"


def test_intervals_sit_beside_their_metric_and_fold_away(workbook):
    wb, _ = workbook
    header = [c.value for c in wb["test"][1]]
    for metric in ("test_qwk", "test_mae"):
        i = header.index(metric)
        assert header[i + 1:i + 3] == [f"{metric}_lo", f"{metric}_hi"]
    header = [c.value for c in wb["aggregated"][1]]
    i = header.index("test_qwk_mean")
    assert header[i:i + 4] == ["test_qwk_mean", "test_qwk_std", "test_qwk_lo", "test_qwk_hi"]


def test_the_best_value_of_each_metric_and_only_it_is_highlighted(workbook):
    wb, frame = workbook
    ws = wb["test"]
    cells = columns(ws)
    ok = frame[frame.status == "ok"]
    for metric, best_row in (("test_qwk", ok.test_qwk.idxmax()), ("test_mae", ok.test_mae.idxmin())):
        assert [c.row for c in cells[metric] if is_best(c)] == [best_row + 2], metric
    assert [c.row for c in cells["test_off1"] if is_best(c)] == [r + 2 for r in ok.index]  # a tie: every best
    for name in ("test_qwk_lo", "test_qwk_hi", "seed", "params_total", "train_seconds"):
        assert not any(is_best(c) for c in cells[name]), name
    aggregated = columns(wb["aggregated"])
    means = [c.value for c in aggregated["test_qwk_mean"]]
    assert [is_best(c) for c in aggregated["test_qwk_mean"]] == [v == max(means) for v in means]
    assert not any(is_best(c) for c in aggregated["test_qwk_std"])
