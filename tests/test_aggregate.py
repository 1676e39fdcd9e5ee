"""The aggregated view across seeds, the paired test against a reference, and the two-key pivot."""

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from scipy import stats

from benchkit.cli import main
from conftest import small_experiment
from test_workbook import assert_readable, columns


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


def _test_predictions(out, model: str, seed: int):
    """The true and the predicted levels: ``mae`` is the error of the predicted level."""
    frame = pd.read_csv(out / "runs" / f"{model}__s{seed}" / "predictions_test.csv")
    return frame.target.to_numpy(), frame.pred.to_numpy()


def _marker(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "ns"


def test_p_values_and_markers_equal_an_independent_computation(two_configs):
    """The paired bootstrap of the test MAE written out from the prediction files (both seeds score the same test
    images, so both share one draw, ``default_rng(seed)``, as do both configurations), and the Wilcoxon
    signed-rank test of the per-seed values from scipy."""
    agg = pd.read_csv(two_configs / "leaderboard_aggregated.csv").set_index("config")
    full, resampled = [], []
    for seed in (0, 1):
        y, frozen = _test_predictions(two_configs, "frozen", seed)
        y_good, good = _test_predictions(two_configs, "good", seed)
        assert np.array_equal(y, y_good)
        draws = np.random.default_rng(0).integers(0, len(y), (300, len(y)))
        full.append(np.abs(frozen - y).mean() - np.abs(good - y).mean())
        resampled.append(np.abs(frozen[draws] - y[draws]).mean(1) - np.abs(good[draws] - y[draws]).mean(1))
    delta, deltas = np.mean(full), np.mean(resampled, axis=0)
    p_value = (np.sum(np.abs(deltas - delta) >= abs(delta) - 1e-12) + 1) / (len(deltas) + 1)
    row = agg.loc["frozen"]
    assert row.delta == pytest.approx(delta, abs=1e-9)
    assert row.p_value == pytest.approx(p_value, abs=1e-12)
    assert row.p_holm == pytest.approx(p_value, abs=1e-12)  # a family of one test
    assert row.significance == _marker(p_value)
    board = pd.read_csv(two_configs / "leaderboard.csv").set_index("run_id")
    per_seed = [board.loc[f"frozen__s{s}", "test_mae"] - board.loc[f"good__s{s}", "test_mae"] for s in (0, 1)]
    assert row.p_wilcoxon == pytest.approx(stats.wilcoxon(per_seed).pvalue)


def test_the_paired_bootstrap_runs_again_only_for_changed_prediction_files(two_configs, monkeypatch):
    import benchkit.results.aggregate as aggregate
    import benchkit.results.paired_tests as paired_tests
    from benchkit.results.leaderboard import build_leaderboard
    calls = []
    real = paired_tests.paired_bootstrap_replicates
    monkeypatch.setattr(paired_tests, "paired_bootstrap_replicates", lambda *a, **k: calls.append(1) or real(*a, **k))
    paired_tests._PAIRED.clear()
    frame = build_leaderboard(two_configs)
    first = aggregate.add_significance(aggregate.aggregate_runs(frame), frame, two_configs, "good", "test_mae", 300)
    again = aggregate.add_significance(aggregate.aggregate_runs(frame), frame, two_configs, "good", "test_mae", 300)
    assert len(calls) == 1  # one pair of configurations, tested once for both refreshes
    pd.testing.assert_frame_equal(first, again)
    predictions = two_configs / "runs" / "frozen__s1" / "predictions_test.csv"
    predictions.write_text(predictions.read_text())  # a new version of one file (a run redone)
    aggregate.add_significance(aggregate.aggregate_runs(frame), frame, two_configs, "good", "test_mae", 300)
    assert len(calls) == 2


def test_xlsx_carries_the_aggregated_sheet(two_configs):
    wb = load_workbook(two_configs / "leaderboard.xlsx")
    assert "aggregated" in wb.sheetnames
    header = [c.value for c in wb["aggregated"][1]]
    assert {"p_value", "p_holm", "significance", "best_group", "test_qwk_mean"} <= set(header)
    assert_readable(wb)  # widths, filter, formats, intervals, highlight (tests/test_workbook.py)
    p_values = [c for name, cells in columns(wb["aggregated"]).items() if name.startswith("p_") for c in cells]
    assert p_values and {c.number_format for c in p_values if c.value is not None} == {"0.0000"}


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
    # every cell is the mean test MAE of its grid cell's runs in the flat leaderboard
    for freeze in (0, 1):
        for dropout in (0.0, 0.5):
            runs = [r.test_mae for r in board.itertuples() if r.freeze == freeze and r.dropout == dropout]
            assert len(runs) == 1 and pivot.loc[freeze, str(dropout)] == pytest.approx(sum(runs) / len(runs))


def test_runs_pair_only_with_reference_runs_of_the_same_split_strategy(tmp_path):
    """A grid over data.split: the official and the group-holdout runs of a configuration are each tested against the
    reference run of their own strategy (other test images), never across strategies."""
    from benchkit.results.aggregate import add_significance, aggregate_runs
    rng = np.random.default_rng(0)
    rows = []
    for split, images in (("official", 40), ("group_holdout", 30)):
        y = rng.integers(0, 4, images)
        for model, noise in (("ref", 0), ("other", 1)):
            run_id = f"{model}-{split}__s0"
            pred = np.clip(y + rng.integers(-noise, noise + 1, images), 0, 3)
            folder = tmp_path / "runs" / run_id
            folder.mkdir(parents=True)
            pd.DataFrame({"image": [f"{split}{i}.jpg" for i in range(images)], "target": y, "pred": pred,
                          "score": pred.astype(float)}).to_csv(folder / "predictions_test.csv", index=False)
            rows.append({"run_id": run_id, "model": model, "backbone": "b", "head": "h", "split": split,
                         "fold": np.nan, "seed": 0, "status": "ok", "num_classes": 4,
                         "test_mae": float(np.abs(pred - y).mean())})
    frame = pd.DataFrame(rows)
    aggregated = add_significance(aggregate_runs(frame), frame, tmp_path, "ref", "test_mae", 200)
    by_config = aggregated.set_index("config")
    assert by_config.loc["ref", "significance"] == "reference"
    expected = frame.set_index("run_id").test_mae
    assert by_config.loc["other", "delta"] == pytest.approx(
        expected["other-official__s0"] - expected["ref-official__s0"])
    assert np.isnan(by_config.loc["other group_holdout", "delta"])  # no reference run of its strategy


def test_sorting_by_a_metric_without_a_paired_bootstrap_says_so_instead_of_failing(two_configs):
    from benchkit.results.aggregate import add_significance, aggregate_runs
    from benchkit.results.leaderboard import build_leaderboard
    frame = build_leaderboard(two_configs)
    assert "test_amae" in frame
    aggregated = add_significance(aggregate_runs(frame), frame, two_configs, "good", "test_amae", 100)
    row = aggregated.set_index("config").loc["frozen"]
    assert row.significance.startswith("no paired bootstrap for amae") and np.isnan(row.p_value)


def test_a_view_no_longer_produced_is_removed_not_left_stale(two_configs, tmp_path):
    import shutil
    from benchkit.config import EvaluationConfig
    from benchkit.results.aggregate import summary_views
    from benchkit.results.leaderboard import build_leaderboard
    out = shutil.copytree(two_configs, tmp_path / "out")
    frame = build_leaderboard(out)
    assert "aggregated" in summary_views(frame, out, EvaluationConfig(reference="good", sort_by="test_mae"))
    single = frame[(frame.seed == 0) & (frame.model == "good")]  # one run of one configuration, no reference
    assert summary_views(single, out, EvaluationConfig(sort_by="test_mae")) == {}
    assert not (out / "leaderboard_aggregated.csv").exists()


def test_the_pivot_keeps_models_apart_and_leaves_ensembles_out():
    from benchkit.results.aggregate import aggregate_runs, grid_pivot
    rows = []
    for model, value in (("a", 1.0), ("b", 0.0)):
        for freeze, dropout in ((0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5)):
            rows.append({"run_id": f"{model}{freeze}{dropout}", "model": model, "backbone": "x", "head": "h",
                         "split": "official", "seed": 0, "fold": np.nan, "ensemble": "", "freeze": freeze,
                         "dropout": dropout, "status": "ok", "test_mae": value})
            rows.append({**rows[-1], "run_id": rows[-1]["run_id"] + "-ens", "seed": np.nan, "ensemble": "seeds",
                         "test_mae": 5.0})
    frame = pd.DataFrame(rows)
    pivot = grid_pivot(aggregate_runs(frame), frame, "test_mae")
    assert pivot.loc[("a", 0)].tolist() == [1.0, 1.0] and pivot.loc[("b", 1)].tolist() == [0.0, 0.0]
