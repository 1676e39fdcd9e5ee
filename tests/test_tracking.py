"""Tracking: a run logged to MLflow (SQLite store in a temp dir) and TensorBoard, read back with their own
readers; the tracking section is validated; a resumed run's earlier epochs are sent at the end."""

import importlib.util
import json

import pandas as pd
import pytest

from benchkit.cli import main
from benchkit.config.validation import validate_experiment
from benchkit.errors import ConfigError
from benchkit.results.tracking import RunTracker, flatten, resolve_mlflow_uri
from benchkit.results.tracking_backend import TrackerBackend
from conftest import small_experiment

RUN_ID = "tiny_cnn-regression__s0"
EPOCHS = 3


HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_mlflow = pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install 'benchkit[mlflow]')")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One run logged to every installed tracker: (output folder, MLflow client or None, MLflow runs)."""
    if not (HAS_MLFLOW or HAS_TENSORBOARD):
        pytest.skip("neither mlflow nor tensorboard is installed (pip install 'benchkit[mlflow,tensorboard]')")
    tmp = tmp_path_factory.mktemp("tracked")
    tracking = {}
    if HAS_MLFLOW:
        tracking["mlflow"] = {"uri": "sqlite:///mlruns.db", "experiment": "benchkit-test"}
    if HAS_TENSORBOARD:
        tracking["tensorboard"] = "tb"
    path = small_experiment(tmp, tracking=tracking, evaluation={"bootstrap": {"n_resamples": 200}, "plots": True}, train={
        "epochs": EPOCHS, "batch_size": 16, "optimizer": {"lr": 3e-3}, "augmentation": "none",
        "ema": {"enabled": False}, "early_stopping": {"patience": 10}})
    out = tmp / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    if not HAS_MLFLOW:
        return out, None, []
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("benchkit-test")
    runs = client.search_runs([experiment.experiment_id])
    return out, client, runs


@needs_mlflow
def test_one_finished_mlflow_run_named_after_the_run(tracked):
    _, _, runs = tracked
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == RUN_ID and run.data.tags["benchkit.status"] == "ok"
    assert run.data.tags["benchkit.model"] == "tiny_cnn-regression" and run.data.tags["benchkit.seed"] == "0"


@needs_mlflow
def test_params_are_the_flattened_resolved_config(tracked):
    _, _, runs = tracked
    params = runs[0].data.params
    assert params["model.backbone.name"] == "tiny_cnn"
    assert params["model.head.name"] == "regression"
    assert params["train.epochs"] == str(EPOCHS) and params["seed"] == "0"
    assert params["train.optimizer.lr"] == "0.003"


@needs_mlflow
def test_per_epoch_metrics_match_history(tracked):
    out, client, runs = tracked
    history = pd.read_csv(out / "runs" / RUN_ID / "history.csv")
    for name in ("train_loss", "valid_loss", "valid_qwk"):
        logged = sorted(client.get_metric_history(runs[0].info.run_id, f"epoch/{name}"), key=lambda m: m.step)
        assert len(logged) == EPOCHS
        assert [m.step for m in logged] == [1, 2, 3]
        assert [m.value for m in logged] == pytest.approx(history[name].tolist())


@needs_mlflow
def test_final_metrics_with_intervals_match_leaderboard(tracked):
    out, _, runs = tracked
    row = pd.read_csv(out / "leaderboard.csv").iloc[0]
    metrics = runs[0].data.metrics
    for column in ("test_mae", "test_mae_lo", "test_mae_hi", "test_qwk", "valid_acc", "params_total"):
        assert metrics[column] == pytest.approx(row[column]), column


@needs_mlflow
def test_artifacts_hold_config_results_plots_and_checkpoint(tracked):
    _, client, runs = tracked
    run_id = runs[0].info.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.json", "history.csv", "predictions_test.csv", "plots", "checkpoint"} <= top
    assert "plots/confusion_test.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/best.safetensors"]
    assert sorted(a.path for a in client.list_artifacts(run_id, "model")) == ["model/config.json",
                                                                              "model/model.safetensors"]


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install 'benchkit[tensorboard]')")
def test_tensorboard_has_one_scalar_per_epoch(tracked):
    out, _, _ = tracked
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tb" / RUN_ID))
    events.Reload()
    assert "epoch/train_loss" in events.Tags()["scalars"], f"no TensorBoard events under {out / 'tb' / RUN_ID}"
    assert [e.step for e in events.Scalars("epoch/train_loss")] == [1, 2, 3]
    history = pd.read_csv(out / "runs" / RUN_ID / "history.csv")
    assert [e.value for e in events.Scalars("epoch/valid_qwk")] == pytest.approx(history.valid_qwk.tolist())
    row = pd.read_csv(out / "leaderboard.csv").iloc[0]
    assert [e.value for e in events.Scalars("final/test_mae")] == pytest.approx([row.test_mae])


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install 'benchkit[tensorboard]')")
def test_tensorboard_hparams_hold_the_run_settings_and_final_metrics(tracked):
    out, _, _ = tracked
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    events = EventAccumulator(str(out / "tb" / RUN_ID))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in content.items()}
    session = next(d.session_start_info for d in data.values() if d.HasField("session_start_info"))
    assert session.hparams["head"].string_value == "regression" and session.hparams["seed"].number_value == 0
    assert session.hparams["epochs"].number_value == EPOCHS
    experiment = next(d.experiment for d in data.values() if d.HasField("experiment"))
    assert "hparam/test_mae" in {m.name.tag for m in experiment.metric_infos}
    row = pd.read_csv(out / "leaderboard.csv").iloc[0]
    assert [e.value for e in events.Scalars("hparam/test_mae")] == pytest.approx([row.test_mae])


def test_tracking_typos_are_config_errors_naming_the_key():
    base = {"name": "x", "data": {"format": "synthetic"}, "models": [{"backbone": "a", "head": "b"}]}
    with pytest.raises(ConfigError, match=r"tracking\.mlfow.*did you mean 'mlflow'"):
        validate_experiment({**base, "tracking": {"mlfow": {}}})
    with pytest.raises(ConfigError, match=r"tracking\.mlflow\.url.*did you mean 'uri'"):
        validate_experiment({**base, "tracking": {"mlflow": {"url": "sqlite:///a.db"}}})
    config = validate_experiment({**base, "tracking": {"mlflow": {}}})
    assert config.tracking.mlflow.uri == "sqlite:///mlruns.db" and config.tracking.tensorboard is None


def test_relative_locations_go_inside_the_output_folder(tmp_path):
    assert resolve_mlflow_uri("sqlite:///m.db", tmp_path) == f"sqlite:///{tmp_path.resolve() / 'm.db'}"
    assert resolve_mlflow_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert resolve_mlflow_uri("http://tracker:5000", tmp_path) == "http://tracker:5000"
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": ""}


class _Recorder(TrackerBackend):
    name = "recorder"

    def __init__(self):
        self.epochs, self.finished = [], None

    def log_epoch(self, epoch, metrics):
        self.epochs.append((epoch, metrics["train_loss"]))

    def finish(self, row, run_dir):
        self.finished = row["status"]


def test_epochs_of_an_earlier_attempt_are_sent_at_the_end(tmp_path):
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.5, 0.4, 0.3]}).to_csv(tmp_path / "history.csv", index=False)
    recorder = _Recorder()
    tracker = RunTracker([recorder], "r")
    tracker.epoch({"epoch": 3, "train_loss": 0.3, "note": "text is skipped"})  # the live, resumed epoch
    tracker.finish({"status": "ok"}, tmp_path)
    assert sorted(recorder.epochs) == [(1, 0.5), (2, 0.4), (3, 0.3)] and recorder.finished == "ok"


def test_a_failing_tracker_is_dropped_without_failing_the_run(tmp_path):
    class Broken(_Recorder):
        def log_epoch(self, epoch, metrics):
            raise OSError("database is locked")

    broken, healthy = Broken(), _Recorder()
    tracker = RunTracker([broken, healthy], "r")
    tracker.epoch({"epoch": 1, "train_loss": 0.5})
    tracker.finish({"status": "ok"}, tmp_path)
    assert broken.finished is None and healthy.finished == "ok" and healthy.epochs == [(1, 0.5)]


@needs_mlflow
def test_a_tracking_server_that_does_not_answer_fails_no_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens: no need to wait
    path = small_experiment(tmp_path, tracking={"mlflow": {"uri": "http://127.0.0.1:1"}})
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.status) == ["ok"]
    err = capsys.readouterr().err
    assert err.count("did not receive") == 1, err
    assert f"MLflow did not receive all of 1 run(s): {RUN_ID} (" in err
    assert json.loads((out / "runs" / RUN_ID / "tracking.json").read_text())["mlflow"]["complete"] is False


@needs_mlflow
def test_a_resumed_run_continues_its_mlflow_run(tmp_path, monkeypatch):
    """A run interrupted after its second epoch (checkpoint at the first) resumes into the same MLflow run:
    one run, each epoch once."""
    from mlflow.tracking import MlflowClient
    path = small_experiment(tmp_path, tracking={"mlflow": {"uri": "sqlite:///mlruns.db", "log_checkpoint": False}},
                            train={"epochs": EPOCHS, "batch_size": 16, "optimizer": {"lr": 3e-3},
                                   "augmentation": "none", "ema": {"enabled": False}})
    out = tmp_path / "out"
    live_epoch = RunTracker.epoch

    def interrupted(tracker, row):
        live_epoch(tracker, row)
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(RunTracker, "epoch", interrupted)
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 130
    first = json.loads((out / "runs" / RUN_ID / "tracking.json").read_text())["mlflow"]
    assert first["complete"] is False and first["run_id"]
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("small").experiment_id])
    assert [r.info.run_id for r in runs] == [first["run_id"]] and runs[0].info.status == "FINISHED"
    history = pd.read_csv(out / "runs" / RUN_ID / "history.csv")
    logged = sorted(client.get_metric_history(first["run_id"], "epoch/train_loss"), key=lambda m: m.step)
    assert [m.step for m in logged] == [1, 2, 3]
    assert [m.value for m in logged] == pytest.approx(history.train_loss.tolist())


@needs_mlflow
def test_a_rerun_of_a_tuned_grid_asks_a_dead_tracking_server_once(tmp_path, capsys, monkeypatch):
    """Trials and runs that the server never received: a re-run while it is still down asks it once for the
    whole command (trials and runs together), not once per phase."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens: no need to wait
    path = small_experiment(tmp_path, tracking={"mlflow": {"uri": "http://127.0.0.1:1"}},
                            tuning={"trials": 2, "epochs": 1, "space": {"train.optimizer.lr": {"low": 3e-3,
                                                                                               "high": 2.0}}})
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("MLflow did not answer") == 1, err
    assert "MLflow did not receive all of 3 run(s)" in err, err  # two trials and the tuned run
