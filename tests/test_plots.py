"""Plots: the numbers drawn equal scikit-learn / pandas / scipy on the same inputs; every plot file is a
PNG; per-run plots are regenerated from the run folder alone; experiment plots come with the leaderboard."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import stats
from sklearn.metrics import confusion_matrix

from benchkit.cli import main
from benchkit.results.plots import (configuration_summary, plot_confusion, plot_grid_heatmap, write_experiment_plots,
                            write_run_plots)
from conftest import small_experiment

RUN_PLOTS = ["confusion_test.png", "confusion_valid.png", "learning_curves.png", "scores_test.png",
             "scores_valid.png"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    path = small_experiment(tmp, evaluation={"bootstrap": {"n_resamples": 200, "seed": 0}, "plots": True})
    out = tmp / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def _is_png(path) -> bool:
    with Image.open(path) as img:
        return img.format == "PNG" and img.size[0] > 200 and img.size[1] > 200


def test_a_finished_run_has_its_plots(finished):
    for run_dir in (finished / "runs").iterdir():
        files = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
        assert files == RUN_PLOTS
        assert all(_is_png(run_dir / "plots" / name) for name in files)


def test_run_plots_are_regenerated_from_the_run_folder(finished, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(next((finished / "runs").iterdir()), run_dir)
    shutil.rmtree(run_dir / "plots")
    written = write_run_plots(run_dir)
    assert sorted(p.name for p in written) == RUN_PLOTS


def test_run_plots_learn_classes_and_best_epoch_from_run_json_not_the_checkpoint(finished, tmp_path, monkeypatch):
    import torch

    from benchkit.results import run_folder
    run_dir = tmp_path / "copy"
    shutil.copytree(next((finished / "runs").iterdir()), run_dir)
    shutil.rmtree(run_dir / "plots")
    (run_dir / "best.safetensors").unlink()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a checkpoint was opened"))
    info = run_folder.read_info(run_dir)
    assert info["classes"] == [f"LEVEL_{k}" for k in range(4)] and info["monitor"] == "loss"
    assert info["best_epoch"] == run_folder.read_row(run_dir)["best_epoch"] >= 1
    assert sorted(p.name for p in write_run_plots(run_dir)) == RUN_PLOTS


def test_experiment_plots_are_written_with_the_leaderboard(finished):
    assert sorted(p.name for p in (finished / "plots").glob("*.png")) == ["leaderboard_test_mae.png"]
    shutil.rmtree(finished / "plots")
    assert main(["leaderboard", str(finished)]) == 0
    assert _is_png(finished / "plots" / "leaderboard_test_mae.png")


def test_confusion_panels_equal_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
    y[y == 3] = 2  # a level absent from the targets keeps its row (all zeros)
    fig = plot_confusion(y, p, ["a", "b", "c", "d"])
    counts, rates = (np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images)
    expected = confusion_matrix(y, p, labels=range(4))
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_allclose(rates[:3], confusion_matrix(y, p, labels=range(4), normalize="true")[:3])
    assert rates[3].sum() == 0


def _grid_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for freeze in [0, 1, 2, "all"]:
        for dropout in [0.0, 0.2, 0.5]:
            for seed in (27, 28):
                mae = rng.uniform(0.4, 1.0)
                rows.append({"run_id": f"m__freeze={freeze}__dropout={dropout}__s{seed}", "model": "m",
                             "seed": seed, "freeze": str(freeze), "dropout": dropout, "test_mae": mae,
                             "test_mae_lo": mae - 0.1, "test_mae_hi": mae + 0.1, "status": "ok"})
    return pd.DataFrame(rows)


def test_heatmap_cells_are_means_over_seeds():
    frame = _grid_frame()
    fig = plot_grid_heatmap(frame, "freeze", "dropout", "test_mae", [0, 1, 2, "all"], [0.0, 0.2, 0.5])
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    expected = frame.pivot_table(index="freeze", columns="dropout", values="test_mae", aggfunc="mean")
    np.testing.assert_allclose(drawn, expected.loc[["0", "1", "2", "all"], [0.0, 0.2, 0.5]].to_numpy())


def test_configuration_intervals_t_over_seeds_or_bootstrap_for_one_run():
    frame = _grid_frame()
    summary = configuration_summary(frame, "test_mae").set_index("config")
    group = frame[(frame.freeze == "all") & (frame.dropout == 0.5)].test_mae
    lo, hi = stats.t.interval(0.95, len(group) - 1, loc=group.mean(), scale=stats.sem(group))
    row = summary.loc["m freeze=all dropout=0.5"]
    assert (row.value, row.lo, row.hi, row.runs) == pytest.approx((group.mean(), lo, hi, 2))
    assert summary.value.is_monotonic_increasing  # MAE: lower is better, best first
    single = configuration_summary(frame[frame.seed == 27], "test_mae").iloc[0]
    assert single.hi - single.lo == pytest.approx(0.2) and single.interval == "bootstrap"


def test_experiment_plots_from_files_include_the_two_key_heatmap(tmp_path):
    _grid_frame().to_csv(tmp_path / "leaderboard.csv", index=False)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump({
        "name": "ablation", "grid": {"backbone.freeze": [0, 1, 2, "all"], "backbone.dropout": [0.0, 0.2, 0.5]},
        "evaluation": {"sort_by": "test_mae"}}, sort_keys=False))
    written = sorted(p.name for p in write_experiment_plots(tmp_path))
    assert written == ["critical_difference_test_mae.png", "heatmap_freeze_x_dropout_test_mae.png",
                       "leaderboard_test_mae.png"]  # 12 configurations over two seeds: ranked
    assert all(_is_png(tmp_path / "plots" / name) for name in written)


def test_a_data_split_grid_keeps_the_yaml_order_of_its_strategy_names():
    """The YAML lists group_kfold and the leaderboard's split column says group_kfold: one name, the YAML's order."""
    from benchkit.results.plots import _grid_values
    frame = pd.DataFrame({"split": ["official", "group_kfold"], "dropout": [0.0, 0.5]})
    experiment = {"grid": {"data.split": ["group_kfold", "official"], "model.head.dropout": [0.5, 0.0]}}
    values = _grid_values(experiment, frame)
    assert values["split"] == ["group_kfold", "official"] and values["dropout"] == [0.5, 0.0]
