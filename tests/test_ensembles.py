"""Ensembles as leaderboard rows: built from the members' prediction files, scored like runs."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, mean_absolute_error

import benchkit
from benchkit.cli import main
from benchkit.errors import ConfigError
from benchkit.evaluation.prediction_files import estimate_of
from benchkit.io import read_json
from conftest import TINY_PLUGIN, small_experiment

K = 4
MODELS = [{"name": "soft", "backbone": "tiny_cnn", "head": {"name": "softmax"}},
          {"name": "corn", "backbone": "tiny_cnn", "head": {"name": "corn", "decode": "calibrated"}}]
ENSEMBLES = ["seeds", {"name": "solo-soft", "members": ["soft__s0"]}, {"name": "solo-corn", "members": ["corn__s1"]},
             {"name": "mixed", "members": ["soft", "corn"]}]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ensembles")
    experiment = small_experiment(tmp, models=MODELS, seeds=[0, 1],
                                  evaluation={"bootstrap": {"n_resamples": 300, "seed": 0}, "plots": False,
                                              "reference": "soft", "ensembles": ENSEMBLES})
    assert main(["run", str(experiment), "--out", str(tmp / "out"), "--quiet"]) == 0
    return experiment, tmp / "out", pd.read_csv(tmp / "out" / "leaderboard.csv")


def _row(board, run_id):
    rows = board[board.run_id == run_id]
    assert len(rows) == 1, board.run_id.tolist()
    return rows.iloc[0]


def _predictions(out, folder, run_id, split="test"):
    return pd.read_csv(out / folder / run_id / f"predictions_{split}.csv")


def test_leaderboard_has_one_row_per_ensemble(finished):
    _, out, board = finished
    ensembles = board[board.ensemble.notna()]
    assert sorted(ensembles.run_id) == ["corn__seeds", "mixed", "soft__seeds", "solo-corn", "solo-soft"]
    assert (ensembles.status == "ok").all() and ensembles.seed.isna().all()
    assert _row(board, "soft__seeds").member_runs == "soft__s0;soft__s1"
    assert _row(board, "mixed").members == 4 and _row(board, "mixed")["head"] == "corn+softmax"
    assert _row(board, "corn__seeds")["head"] == "corn" and _row(board, "corn__seeds").model == "corn"


@pytest.mark.parametrize("ensemble, member", [("solo-soft", "soft__s0"), ("solo-corn", "corn__s1")])
def test_an_ensemble_of_one_member_equals_the_member(finished, ensemble, member):
    _, out, board = finished
    metrics = [c for c in board if c.startswith(("valid_", "test_"))]
    mine, theirs = _row(board, ensemble)[metrics], _row(board, member)[metrics]
    assert mine.notna().sum() > 20
    pd.testing.assert_series_equal(mine, theirs, check_names=False)
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(_predictions(out, "ensembles", ensemble, split),
                                      _predictions(out, "runs", member, split))
    calibrated = read_json(out / "ensembles" / "solo-corn" / "metrics.json")["calibration"]
    assert calibrated == read_json(out / "runs" / "corn__s1" / "details.json")["calibration"]


@pytest.mark.parametrize("ensemble", ["soft__seeds", "corn__seeds", "mixed"])
def test_ensemble_metrics_recomputed_from_its_predictions_by_scikit_learn(finished, ensemble):
    _, out, board = finished
    row = _row(board, ensemble)
    for split in ("valid", "test"):
        frame = _predictions(out, "ensembles", ensemble, split)
        y, pred, score = frame.target, frame.pred, frame.score
        assert row[f"{split}_acc"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        assert row[f"{split}_mae"] == pytest.approx(mean_absolute_error(y, pred), abs=1e-12)
        assert row[f"{split}_score_mae"] == pytest.approx(mean_absolute_error(y, score), abs=1e-6)
        assert row[f"{split}_qwk"] == pytest.approx(
            cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(K))), abs=1e-9)
        assert row[f"{split}_f1"] == pytest.approx(
            f1_score(y, pred, average="macro", labels=list(range(K)), zero_division=0), abs=1e-9)
        assert row[f"{split}_off1"] == pytest.approx(np.mean(np.abs(y - pred) <= 1), abs=1e-12)
        assert row[f"{split}_acc_lo"] <= row[f"{split}_acc"] <= row[f"{split}_acc_hi"]


def test_an_ensemble_averages_its_members_estimates(finished):
    _, out, board = finished
    members = [_predictions(out, "runs", r) for r in ("soft__s0", "soft__s1")]
    ensemble = _predictions(out, "ensembles", "soft__seeds")
    probs = [f"prob_{k}" for k in range(K)]
    mean = (members[0][probs].to_numpy(np.float64) + members[1][probs].to_numpy(np.float64)) / 2
    np.testing.assert_allclose(ensemble[probs].to_numpy(), mean, atol=1e-7)
    assert (ensemble.pred == ensemble[probs].to_numpy().argmax(1)).all()  # softmax decodes argmax
    assert not np.allclose(members[0][probs], members[1][probs])
    corn = _predictions(out, "ensembles", "corn__seeds")
    exceed = [f"exceed_{k}" for k in range(K - 1)]
    corn_members = [_predictions(out, "runs", r)[exceed].to_numpy(np.float64) for r in ("corn__s0", "corn__s1")]
    np.testing.assert_allclose(corn[exceed].to_numpy(), sum(corn_members) / 2, atol=1e-7)
    threshold = read_json(out / "ensembles" / "corn__seeds" / "metrics.json")["calibration"]["threshold"]
    assert (corn.pred == (corn[exceed].to_numpy() > threshold).sum(1)).all()
    mixed = _predictions(out, "ensembles", "mixed")
    assert set(estimate_of(mixed)) == {"score", "probs"}


def test_ensembles_get_the_paired_test_against_the_reference(finished):
    _, out, _ = finished
    aggregated = pd.read_csv(out / "leaderboard_aggregated.csv").set_index("config")
    assert aggregated.loc["soft", "significance"] == "reference"
    for config in ("soft [seeds]", "corn [seeds]", "mixed [ensemble]"):
        assert 0 < aggregated.loc[config, "p_value"] <= 1 and np.isfinite(aggregated.loc[config, "delta"])
        assert np.isnan(aggregated.loc[config, "p_wilcoxon"])
    solo = aggregated.loc["solo-soft [ensemble]"]
    assert solo["delta"] == pytest.approx(_row(finished[2], "solo-soft").test_mae - finished[2][
        finished[2].run_id.isin(["soft__s0", "soft__s1"])].test_mae.mean())


def test_leaderboard_rebuild_reuses_ensembles(finished):
    _, out, board = finished
    stamp = (out / "ensembles" / "mixed" / "metrics.json").stat().st_mtime_ns
    assert main(["leaderboard", str(out)]) == 0
    assert (out / "ensembles" / "mixed" / "metrics.json").stat().st_mtime_ns == stamp
    rebuilt = pd.read_csv(out / "leaderboard.csv")
    assert sorted(rebuilt.run_id) == sorted(board.run_id)


def test_unknown_ensemble_member_exits_2(tmp_path, capsys):
    experiment = small_experiment(tmp_path, models=MODELS[:1], plugins=[str(TINY_PLUGIN)],
                                  evaluation={"ensembles": [{"name": "e", "members": ["sofft"]}]})
    assert main(["run", str(experiment), "--dry-run"]) == 2
    assert "evaluation.ensembles 'e': ['sofft'] name no model" in capsys.readouterr().err


def test_dry_run_lists_tta_and_ensembles(tmp_path, capsys):
    experiment = small_experiment(tmp_path, models=MODELS, seeds=[0, 1],
                                  evaluation={"tta": ["identity", "hflip"], "ensembles": ENSEMBLES})
    assert main(["run", str(experiment), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "test-time augmentation: identity+hflip" in out
    assert "ensemble soft__seeds: mean of 2 run(s): soft__s0, soft__s1" in out
    assert "ensemble mixed: mean of 4 run(s)" in out


def test_configurations_of_one_model_name_over_a_backbone_grid_get_distinct_labels(tmp_path):
    """A named model with grid backbone.name: each backbone is its own configuration, reference and ensemble."""
    experiment = small_experiment(
        tmp_path, models=[{"name": "m", "backbone": "tiny_cnn", "head": "softmax"}], seeds=[0, 1],
        grid={"backbone.name": ["tiny_cnn", "tiny_cnn_wide"]}, plugins=[str(TINY_PLUGIN), str(_wide_plugin(tmp_path))],
        evaluation={"bootstrap": {"n_resamples": 200, "seed": 0}, "plots": False,
                    "reference": "m backbone=tiny_cnn", "ensembles": ["seeds"]})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    aggregated = pd.read_csv(out / "leaderboard_aggregated.csv").set_index("config")
    assert sorted(aggregated.index) == ["m backbone=tiny_cnn", "m backbone=tiny_cnn [seeds]",
                                        "m backbone=tiny_cnn_wide", "m backbone=tiny_cnn_wide [seeds]"]
    assert aggregated.loc["m backbone=tiny_cnn", "significance"] == "reference"
    assert aggregated.loc["m backbone=tiny_cnn_wide", "runs"] == 2
    board = pd.read_csv(out / "leaderboard.csv")
    wide = board[(board.backbone == "tiny_cnn_wide") & board.ensemble.isna()]
    assert aggregated.loc["m backbone=tiny_cnn_wide", "test_mae_mean"] == pytest.approx(wide.test_mae.mean())


def _wide_plugin(tmp_path):
    path = tmp_path / "wide.py"
    path.write_text(
        "from benchkit import register_backbone\n"
        "from benchkit.registry import BACKBONES\n"
        "\n"
        "@register_backbone('tiny_cnn_wide', force=True)\n"
        "def tiny_cnn_wide(pretrained=False, weights=None, weights_map=None, drop_path=None):\n"
        "    return BACKBONES.get('tiny_cnn')(width=12)\n")
    return path


def test_the_python_api_gives_ensembles_predictions_and_says_they_have_no_model(finished):
    _, out, board = finished
    results = benchkit.load_results(out)
    predictions = results.predictions("test")
    assert set(predictions.run_id) == set(board.run_id)
    mixed = predictions[predictions.run_id == "mixed"].drop(columns="run_id").reset_index(drop=True)
    expected = _predictions(out, "ensembles", "mixed")
    np.testing.assert_allclose(mixed.score, expected.score)
    assert mixed.pred.tolist() == expected.pred.tolist()
    with pytest.raises(ConfigError, match="'mixed' is an ensemble, with no model of its own"):
        results.run("mixed")


def test_an_ensemble_scored_under_other_metric_definitions_is_scored_again(finished, monkeypatch):
    """The saved row of an ensemble is reused while its members' files are unchanged, unless the metrics changed
    meaning since (``SCORES_VERSION``)."""
    import benchkit.results.ensembles as ensembles
    from benchkit.config.validation import load_experiment
    from benchkit.io import write_json
    from benchkit.results.aggregate import with_ensembles
    from benchkit.results.leaderboard import build_leaderboard
    experiment, out, board = finished
    evaluation = load_experiment(experiment).evaluation
    path = out / "ensembles" / "soft__seeds" / "metrics.json"
    stored = read_json(path)
    write_json(path, {**stored, "row": {**stored["row"], "test_mae": 99.0}})

    def rebuilt():
        return _row(with_ensembles(build_leaderboard(out), out, evaluation), "soft__seeds").test_mae

    assert rebuilt() == 99.0  # reused as saved
    monkeypatch.setattr(ensembles, "SCORES_VERSION", ensembles.SCORES_VERSION + 1)
    assert rebuilt() == _row(board, "soft__seeds").test_mae
