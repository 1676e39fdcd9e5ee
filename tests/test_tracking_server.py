"""A lost tracking server costs no result: a grid logged over HTTP to a real ``mlflow server`` (SQLite store,
127.0.0.1) that is killed mid-grid keeps every result, warns once naming the runs the server did not fully
receive, and a re-run once the server is back sends them from their files into the same MLflow runs, without
training. The same holds for the trials of a tuning experiment."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from benchkit.cli import main
from benchkit.io import read_json
from benchkit.results import results_folder, run_folder
from benchkit.results.tracking import RunTracker
from conftest import small_experiment

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                 reason="mlflow is not installed (pip install 'benchkit[mlflow]')")]

RUNS = [f"tiny_cnn-regression__s{seed}" for seed in range(4)]
EPOCHS = 2
EXPERIMENT = "lost-server"


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and artifacts in ``folder``; its own process group,
    so :meth:`kill` takes its workers with it."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, _free_port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'store.db'}",
                   "--artifacts-destination", str(self.folder / "artifacts")]
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server did not answer within 90 s:\n{(self.folder / 'server.log').read_text()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and every process it started; wait until they are gone."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(self.process.pid), "a process of the mlflow server outlived its kill"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@pytest.fixture
def idle_server(tmp_path):
    """An ``mlflow server`` not started yet: nothing answers at its (free) port until :meth:`MlflowServer.start`."""
    store = tmp_path / "server"
    store.mkdir()
    server = MlflowServer(store)
    yield server
    server.kill()


@pytest.fixture
def server(idle_server):
    idle_server.start()
    return idle_server


def _files(*folders: Path) -> dict[str, int]:
    """Every file of these run or trial folders () but its tracking record, with its
    modification time."""
    return {str(p): p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*")
            if p.is_file() and p.name != run_folder.TRACKING}


def _record(out: Path, run_id: str) -> dict:
    return _entry(out / "runs" / run_id)


def _entry(folder: Path) -> dict:
    """The MLflow entry of a run or trial folder's tracking record."""
    return json.loads((folder / run_folder.TRACKING).read_text())["mlflow"]


def test_a_server_killed_mid_grid_costs_no_result_and_a_rerun_completes_the_tracking(
        server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a dead server is known at once
    path = small_experiment(tmp_path, seeds=[0, 1, 2, 3], tracking={"mlflow": {"uri": server.url,
                                                                                "experiment": EXPERIMENT}},
                            train={"epochs": EPOCHS, "batch_size": 16, "optimizer": {"lr": 3e-3},
                                   "augmentation": "none", "ema": {"enabled": False}})
    out = tmp_path / "out"
    live_epoch = RunTracker.epoch

    def epoch_then_kill(tracker, row):  # the server dies while the second run trains, after its first epoch
        live_epoch(tracker, row)
        if tracker.run_id == RUNS[1] and server.alive:
            server.kill()

    monkeypatch.setattr(RunTracker, "epoch", epoch_then_kill)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert not server.alive
    err = capsys.readouterr().err

    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board.run_id) == RUNS and set(board.status) == {"ok"}
    for run_id in RUNS:
        folder = out / "runs" / run_id
        assert run_folder.is_finished(folder) and run_folder.best_weights_path(folder) is not None
        assert len(run_folder.read_history(folder)) == EPOCHS
        assert run_folder.read_predictions(folder, "test") is not None
    warnings = [line for line in err.splitlines() if "did not receive" in line]
    assert len(warnings) == 1, err
    named = re.search(r"MLflow did not receive all of (\d+) run\(s\): (.*?) \(", warnings[0])
    assert named and named.group(2).split(", ") == RUNS[1:] and named.group(1) == "3", warnings[0]
    assert "run the same command again" in warnings[0]
    assert _record(out, RUNS[0])["complete"] is True
    assert [_record(out, r)["complete"] for r in RUNS[1:]] == [False, False, False]
    cut_short = _record(out, RUNS[1])["run_id"]  # the server held this run when it died
    assert cut_short and "run_id" not in _record(out, RUNS[2])

    before = _files(out / "runs")
    fits = []
    from benchkit.training.engine import Engine
    fit = Engine.fit
    monkeypatch.setattr(Engine, "fit", lambda *a, **k: fits.append(1) or fit(*a, **k))
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0  # the server still down: asked once
    err = capsys.readouterr().err
    assert err.count("MLflow did not answer") == 1 and err.count("did not receive all of 3 run(s)") == 1, err
    assert fits == [] and _record(out, RUNS[1])["run_id"] == cut_short

    server.start()  # back, on the same store and address
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert fits == [] and _files(out / "runs") == before, "a run trained again"
    assert "did not receive" not in err, err
    assert err.count("skipped; sent to MLflow from its files (no training)") == 3, err
    assert all(_record(out, r)["complete"] for r in RUNS) and _record(out, RUNS[1])["run_id"] == cut_short

    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    logged = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    assert sorted(r.info.run_name for r in logged) == RUNS, "a run is missing or logged twice"
    board = board.set_index("run_id")
    for run in logged:
        run_id, history = run.info.run_name, run_folder.read_history(out / "runs" / run.info.run_name)
        assert run.info.status == "FINISHED" and run.data.tags["benchkit.status"] == "ok"
        assert run.data.params["seed"] == run_id[-1] and run.data.params["train.epochs"] == str(EPOCHS)
        for column in ("test_mae", "test_mae_lo", "valid_qwk", "params_total"):
            assert run.data.metrics[column] == pytest.approx(board.loc[run_id, column]), (run_id, column)
        for name in ("train_loss", "valid_loss"):
            points = sorted(client.get_metric_history(run.info.run_id, f"epoch/{name}"), key=lambda m: m.step)
            assert [m.step for m in points] == [1, 2], (run_id, name, points)  # each epoch once
            assert [m.value for m in points] == pytest.approx(history[name].tolist())
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "history.csv", "predictions_test.csv", "checkpoint", "model"} <= artifacts


TUNED = ["tiny_cnn-coral", "tiny_cnn-regression"]
LR_SPACE = {"train.optimizer.lr": {"low": 1e-3, "high": 1e-1, "log": True}}


def test_trials_and_runs_a_server_never_received_are_sent_by_a_rerun_without_training(
        idle_server, tmp_path, capsys, monkeypatch):
    """A tuning experiment logged to a server that is not there: every trial and run finishes, one warning
    names them all; once the server answers, a re-run sends each from its files, once, without training."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = idle_server
    models = [{"backbone": "tiny_cnn", "head": "regression"}, {"backbone": "tiny_cnn", "head": "coral"}]
    path = small_experiment(tmp_path, models=models, tracking={"mlflow": {"uri": server.url, "experiment": EXPERIMENT}},
                            train={"epochs": 1, "batch_size": 16, "optimizer": {"lr": 3e-3}, "augmentation": "none",
                                   "ema": {"enabled": False}},
                            tuning={"trials": 2, "epochs": 1, "space": LR_SPACE})
    out = tmp_path / "out"
    trial_dirs = {f"{s}__trial-{n:03d}": results_folder.trial_dir(out, s, n) for s in TUNED for n in range(2)}
    run_ids = [f"{model}__s0" for model in TUNED]
    folders = {**trial_dirs, **{run_id: out / "runs" / run_id for run_id in run_ids}}
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    rows = {name: read_json(folder / run_folder.METRICS)["row"] for name, folder in folders.items()}
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert all(run_folder.is_finished(out / "runs" / run_id) for run_id in run_ids)
    assert not any(_entry(folder)["complete"] for folder in folders.values())
    warnings = [line for line in err.splitlines() if "did not receive" in line]
    assert len(warnings) == 1, err
    named = re.search(r"MLflow did not receive all of (\d+) run\(s\): (.*?) \(", warnings[0])
    assert named and sorted(named.group(2).split(", ")) == sorted(folders) and named.group(1) == "6", warnings[0]

    before = _files(*folders.values())
    fits = []
    from benchkit.training.engine import Engine
    fit = Engine.fit
    monkeypatch.setattr(Engine, "fit", lambda *a, **k: fits.append(1) or fit(*a, **k))
    server.start()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert fits == [] and _files(*folders.values()) == before, "a trial or run trained again"
    assert "did not receive" not in err, err
    assert err.count("sent to MLflow from its files (no training)") == 6, err

    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    client = MlflowClient(tracking_uri=server.url)
    logged = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                run_view_type=ViewType.ALL)
    assert sorted(r.info.run_name for r in logged) == sorted(folders), "a trial or run is missing or logged twice"
    for run in logged:
        name, tags = run.info.run_name, run.data.tags
        assert run.info.status == "FINISHED" and tags["benchkit.status"] == "ok", name
        assert _entry(folders[name])["run_id"] == run.info.run_id
        if name in trial_dirs:
            assert (tags["benchkit.study"], tags["benchkit.trial"]) == (name.split("__")[0], name[-1])
        else:
            assert tags["benchkit.study"] == name.split("__")[0] and tags["benchkit.tuned"] == "true"
        final = [c for c in ("valid_mae", "valid_qwk", "test_mae", "test_mae_lo") if c in rows[name]]
        assert len(final) == (2 if name in trial_dirs else 4), (name, sorted(rows[name]))
        for column in final:
            assert run.data.metrics[column] == pytest.approx(rows[name][column]), (name, column)
