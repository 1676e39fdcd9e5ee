"""The Python API: ``benchkit.run`` gives the CLI's leaderboard; ``load_results`` reads a results folder as
DataFrames whose predictions recompute the leaderboard's metrics with scikit-learn."""

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error

import benchkit
from benchkit.cli import main
from benchkit.errors import ConfigError
from conftest import small_experiment

MACHINE_COLUMNS = ["train_seconds", "wall_seconds", "peak_rss_mb", "peak_gpu_mb"]  # how long and how much memory
HEADS = [{"backbone": "tiny_cnn", "head": "regression"}, {"backbone": "tiny_cnn", "head": "softmax"}]
TEST_IMAGES = 24


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return small_experiment(tmp_path_factory.mktemp("api"), models=HEADS, seeds=[0, 1])


@pytest.fixture(scope="module")
def api_results(experiment, tmp_path_factory):
    return benchkit.run(experiment, out=tmp_path_factory.mktemp("api_out") / "out", quiet=True)


def _comparable(board: pd.DataFrame) -> pd.DataFrame:
    return board.drop(columns=[c for c in MACHINE_COLUMNS if c in board]).set_index("run_id").sort_index()


def test_run_returns_the_leaderboard_the_command_line_writes(experiment, api_results, tmp_path):
    assert isinstance(api_results, benchkit.Results) and len(api_results.run_ids) == 4
    out = tmp_path / "cli"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    cli = pd.read_csv(out / "leaderboard.csv")
    pd.testing.assert_frame_equal(_comparable(api_results.leaderboard), _comparable(cli))
    assert (api_results.leaderboard.status == "ok").all()


def test_run_takes_a_mapping_and_overrides(experiment, api_results, tmp_path, monkeypatch):
    monkeypatch.chdir(experiment.parent)  # a mapping's relative paths are taken from the current folder
    raw = yaml.safe_load(experiment.read_text())
    results = benchkit.run(raw, out=tmp_path / "dict", overrides=["seeds=[1]", "train.epochs=2"], quiet=True)
    expected = _comparable(api_results.leaderboard)
    got = _comparable(results.leaderboard)
    assert sorted(got.index) == sorted(i for i in expected.index if i.endswith("__s1"))
    pd.testing.assert_frame_equal(got, expected.loc[got.index])


def test_predictions_have_one_row_per_run_and_image_and_recompute_the_metrics(api_results):
    predictions = benchkit.load_results(api_results.out_dir).predictions("test")
    assert list(predictions.columns) == ["run_id", "image", "target", "pred", "score", "probabilities"]
    assert len(predictions) == 4 * TEST_IMAGES
    assert not predictions.duplicated(["run_id", "image"]).any()
    board = api_results.leaderboard.set_index("run_id")
    for run_id, rows in predictions.groupby("run_id"):
        expected = board.loc[run_id]
        assert accuracy_score(rows.target, rows.pred) == pytest.approx(expected.test_acc, abs=1e-12)
        assert mean_absolute_error(rows.target, rows.pred) == pytest.approx(expected.test_mae, abs=1e-12)
        assert mean_absolute_error(rows.target, rows.score) == pytest.approx(expected.test_score_mae, abs=1e-6)
        qwk = cohen_kappa_score(rows.target, rows.pred, weights="quadratic", labels=list(range(4)))
        assert qwk == pytest.approx(expected.test_qwk, abs=1e-12)
        has_probabilities = expected["head"] == "softmax"
        assert rows.probabilities.map(lambda p: p is not None).all() == has_probabilities
        if has_probabilities:
            probs = np.stack(rows.probabilities.to_list())
            assert probs.shape == (TEST_IMAGES, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
            assert (probs.argmax(axis=1) == rows.pred.to_numpy()).all()  # softmax decodes by argmax


def test_history_aggregated_and_one_run(api_results):
    history = api_results.history
    assert set(history.run_id) == set(api_results.run_ids)
    assert (history.groupby("run_id").epoch.max() == 2).all() and "valid_loss" in history
    aggregated = api_results.aggregated
    assert sorted(aggregated.runs) == [2, 2] and "test_mae_mean" in aggregated
    run = api_results.run(api_results.run_ids[0])
    assert isinstance(run, benchkit.LoadedRun) and run.run_dir.name == api_results.run_ids[0]
    with pytest.raises(ConfigError, match="did you mean"):
        api_results.run(api_results.run_ids[0] + "x")


def test_load_results_of_a_folder_without_runs_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="no runs/ folder"):
        benchkit.load_results(tmp_path)


def test_results_of_a_folder_whose_runs_have_not_finished_are_empty(tmp_path):
    """Another process holds every run: the leaderboard file is written with no row yet."""
    from benchkit.results.leaderboard import write_leaderboard
    (tmp_path / "runs" / "a__s0").mkdir(parents=True)
    write_leaderboard(pd.DataFrame(), tmp_path)
    results = benchkit.load_results(tmp_path)
    assert results.leaderboard.empty and results.run_ids == [] and "0 run(s)" in repr(results)
    assert results.predictions("test").empty and results.history.empty
