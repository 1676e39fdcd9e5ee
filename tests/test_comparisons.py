"""Fair comparisons on a results folder whose answer is known: Holm-adjusted tests against the reference, the group
of configurations not significantly worse than the best, and the rank view (Friedman, Nemenyi, critical-difference
diagram) in the files, the workbook and the report.

The folder is written by hand: four configurations, two seeds, the same 120 test images. ``a`` misses 10 images,
``b`` 10 and 11 others (indistinguishable from ``a``), ``c`` the 10 of ``a`` and 5 more (p about 0.04 against
``a`` alone, not significant once the family of comparisons is taken into account), ``d`` half of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from openpyxl import load_workbook
from scipy.stats import friedmanchisquare
from statsmodels.stats.multitest import multipletests

from benchkit.config import EvaluationConfig
from benchkit.evaluation.metrics import compute_metrics
from benchkit.results import run_folder

K, N, SEEDS = 4, 120, (0, 1)
MISSED = {"a": (range(0, 10), range(0, 10)), "b": (range(2, 12), range(2, 13)),
          "c": (range(0, 15), range(0, 15)), "d": (range(0, 60), range(0, 60))}
EVALUATION = {"bootstrap": {"n_resamples": 2000, "seed": 0}, "sort_by": "test_mae", "reference": "a"}


def _targets() -> np.ndarray:
    return np.random.default_rng(0).integers(0, K, N)


def _levels(missed) -> np.ndarray:
    y = _targets()
    pred = y.copy()
    idx = np.asarray(list(missed))
    pred[idx] = np.where(y[idx] < K - 1, y[idx] + 1, y[idx] - 1)
    return pred


def write_comparison(out, missed=MISSED, seeds=SEEDS) -> None:
    """Run folders with a ``metrics.json`` row and ``predictions_test.csv`` per configuration and seed."""
    y = _targets()
    for model, per_seed in missed.items():
        for seed, wrong in zip(seeds, per_seed):
            pred = _levels(wrong)
            score = pred + np.random.default_rng(seed).uniform(-0.4, 0.4, N)
            run_dir = out / "runs" / f"{model}__s{seed}"
            run_dir.mkdir(parents=True)
            run_folder.write_predictions(run_dir, "test", pd.DataFrame(
                {"image": [f"img{i}.jpg" for i in range(N)], "target": y, "pred": pred, "score": score}))
            metrics = compute_metrics(y, pred, score, K)
            run_folder.write_row(run_dir, {"run_id": f"{model}__s{seed}", "model": model, "backbone": "net",
                                           "head": "regression", "seed": seed, "split": "official", "fold": None,
                                           **{f"test_{m}": v for m, v in metrics.items()}, "num_classes": K,
                                           "status": "ok", "error": ""})
    (out / "experiment.yaml").write_text(yaml.safe_dump({"name": "known", "evaluation": EVALUATION}))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from benchkit.results.aggregate import summary_views
    from benchkit.results.leaderboard import build_leaderboard, write_leaderboard
    from benchkit.results.plots import write_experiment_plots
    from benchkit.results.report import write_report
    out = tmp_path_factory.mktemp("compared")
    write_comparison(out)
    frame = build_leaderboard(out)
    sheets = summary_views(frame, out, EvaluationConfig(**EVALUATION))
    write_leaderboard(frame, out, extra_sheets=sheets)
    plots = write_experiment_plots(out, frame)
    write_report(out)
    return out, sheets, plots


def _aggregated(out) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard_aggregated.csv").set_index("config")


def test_the_known_answer_premise(compared):
    """Raw p-values against ``a``: ``d`` far below 0.05, ``c`` just below, ``b`` far above."""
    agg = _aggregated(compared[0])
    assert agg.p_value["d"] < 0.002 and 0.025 < agg.p_value["c"] < 0.05 and agg.p_value["b"] > 0.5


def test_p_holm_is_statsmodels_holm_over_the_configurations(compared):
    agg = _aggregated(compared[0])
    tested = agg.p_value.dropna()
    assert sorted(tested.index) == ["b", "c", "d"]
    want = multipletests(tested.to_numpy(), method="holm")[1]
    np.testing.assert_allclose(agg.p_holm[tested.index].to_numpy(), want, rtol=0, atol=1e-12)
    assert np.isnan(agg.p_holm["a"]) and agg.significance["a"] == "reference"


def test_significance_markers_read_the_adjusted_p_value(compared):
    agg = _aggregated(compared[0])
    marker = {"b": "ns", "c": "ns", "d": "**"}  # raw: ns, *, ***
    assert agg.significance[list(marker)].to_dict() == marker
    assert agg.p_holm["c"] == pytest.approx(2 * agg.p_value["c"])


def test_the_best_group_holds_the_configurations_not_significantly_worse_than_the_best(compared):
    agg = _aggregated(compared[0])
    assert agg.index[0] == "a"  # the best test MAE
    assert agg.best_group.to_dict() == {"a": True, "b": True, "c": True, "d": False}
    assert np.isnan(agg.p_vs_best["a"]) and agg.delta_vs_best["d"] == pytest.approx(50 / N)
    tested = agg.p_vs_best.dropna()
    np.testing.assert_allclose(agg.p_vs_best_holm[tested.index], multipletests(tested.to_numpy(), method="holm")[1],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(agg.p_vs_best[["b", "c", "d"]], agg.p_value[["b", "c", "d"]], rtol=0, atol=1e-12)


def test_the_best_group_is_taken_against_the_best_by_the_sort_metric(tmp_path):
    """Without a reference and with ``d`` first in the files, the group is still formed around ``a``; sorted by a
    higher-is-better metric (accuracy), the same."""
    from benchkit.results.aggregate import summary_views
    from benchkit.results.leaderboard import build_leaderboard
    write_comparison(tmp_path, {name: MISSED[name] for name in ("d", "c", "b", "a")})
    frame = build_leaderboard(tmp_path)
    for sort_by in ("test_mae", "test_acc"):
        sheets = summary_views(frame, tmp_path, EvaluationConfig(sort_by=sort_by, bootstrap={"n_resamples": 2000}))
        agg = sheets["aggregated"].set_index("config")
        assert agg.best_group.to_dict() == {"a": True, "b": True, "c": True, "d": False}, sort_by
        assert np.isnan(agg.p_vs_best["a"]) and agg.p_vs_best["d"] < 0.01


def test_ranks_file_and_sheet_recomputed_with_scipy(compared):
    out, sheets, _ = compared
    ranks = pd.read_csv(out / "leaderboard_ranks.csv").set_index("config")
    board = pd.read_csv(out / "leaderboard.csv")
    values = board.pivot_table(index="seed", columns="model", values="test_mae")
    statistic, p_value = friedmanchisquare(*(values[c] for c in values))
    assert ranks.friedman_chi2.iloc[0] == pytest.approx(statistic)
    assert ranks.friedman_p.iloc[0] == pytest.approx(p_value)
    assert ranks.mean_rank.to_dict() == {"a": 1.25, "b": 1.75, "c": 3.0, "d": 4.0}  # a, b tie on seed 0
    assert (ranks.blocks == 2).all() and (ranks.configs == 4).all()
    assert "ranks" in load_workbook(out / "leaderboard.xlsx").sheetnames
    pd.testing.assert_frame_equal(sheets["ranks"].set_index("config"), ranks, check_dtype=False)


def test_the_critical_difference_diagram_is_drawn_and_in_the_report(compared):
    out, _, plots = compared
    diagram = out / "plots" / "critical_difference_test_mae.png"
    assert diagram in plots and diagram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Average ranks over folds and seeds" in page and "critical_difference_test_mae" in page
    assert "p_holm" in page and "best_group" in page


def test_a_single_block_gives_no_rank_view_and_removes_a_stale_one(compared, tmp_path):
    import shutil
    from benchkit.results.aggregate import summary_views
    from benchkit.results.leaderboard import build_leaderboard
    from benchkit.results.plots import write_experiment_plots
    out = shutil.copytree(compared[0], tmp_path / "out")
    frame = build_leaderboard(out)
    one_seed = frame[frame.seed == 0]
    assert "ranks" not in summary_views(one_seed, out, EvaluationConfig(**EVALUATION))
    assert not (out / "leaderboard_ranks.csv").exists()
    write_experiment_plots(out, one_seed)
    assert not list((out / "plots").glob("critical_difference_*.png"))
