"""The aggregated view across seeds, the paired test against a reference, and the two-key pivot."""

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from scipy import stats

from benchkit.cli import main
from conftest import small_experiment


@pytest.fixture(scope="module")
def two_configs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agg")
    path = small_experiment(
        tmp, seeds=[0, 1],
        models=[{"name": "good", "backbone": "tiny_cnn", "head": "regression"},
                {"name": "frozen", "backbone": {"name": "tiny_cnn", "freeze": "all"}, "head": "regression",
                 "train": {"optimizer": {"lr": 1e-5}}}],
        evaluation={"bootstrap": {"n_resamples": 300, "seed": 0}, "reference": "good", "sort_by": "test_mae"})
    out = tmp / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_aggregated_mean_std_and_t_interval_match_the_rows(two_configs):
    board = pd.read_csv(two_configs / "leaderboard.csv")
    agg = pd.read_csv(two_configs / "leaderboard_aggregated.csv").set_index("config")
    values = board[board.model == "good"].test_mae.to_numpy()
    row = agg.loc["good"]
    assert row.runs == 2 and row.seeds == "0,1"
    assert row.test_mae_mean == pytest.approx(values.mean())
    assert row.test_mae_std == pytest.approx(values.std(ddof=1))
    half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
    assert row.test_mae_lo == pytest.approx(values.mean() - half)


def test_reference_and_paired_test_columns(two_configs):
    agg = pd.read_csv(two_configs / "leaderboard_aggregated.csv").set_index("config")
    assert agg.loc["good", "significance"] == "reference"
    assert 0 < agg.loc["frozen", "p_value"] <= 1
    assert agg.loc["frozen", "significance"] in {"*", "**", "***", "ns"}
    board = pd.read_csv(two_configs / "leaderboard.csv").set_index("model")
    expected_delta = board.loc["frozen"].test_mae.mean() - board.loc["good"].test_mae.mean()
    assert agg.loc["frozen", "delta"] == pytest.approx(expected_delta)


def test_xlsx_carries_the_aggregated_sheet(two_configs):
    wb = load_workbook(two_configs / "leaderboard.xlsx")
    assert "aggregated" in wb.sheetnames
    header = [c.value for c in wb["aggregated"][1]]
    assert "p_value" in header and "significance" in header and "test_qwk_mean" in header


def test_two_key_grid_gives_a_pivot(tmp_path):
    path = small_experiment(tmp_path, grid={"backbone.freeze": [0, 1], "backbone.dropout": [0.0, 0.5]},
                            train={"epochs": 1, "batch_size": 16, "augmentation": "none", "ema": {"enabled": False}})
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    pivot = pd.read_csv(out / "leaderboard_pivot.csv", index_col=0)
    board = pd.read_csv(out / "leaderboard.csv")
    assert pivot.shape == (2, 2)
    expected = board.set_index(["freeze", "dropout"]).test_mae
    assert pivot.loc[1, "0.5"] == pytest.approx(expected.loc[(1, 0.5)])
    assert "pivot" in load_workbook(out / "leaderboard.xlsx").sheetnames
    # one line of pandas gives the same table from the flat leaderboard
    assert board.pivot_table(index="freeze", columns="dropout", values="test_mae").shape == (2, 2)
