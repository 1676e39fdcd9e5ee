"""One progress display: runs in workers report to files and draw nothing; the driver shows every run in
flight (epoch, best metric, ETA) and the finished count."""

import io
import json
import subprocess
import sys

from rich.console import Console

from benchkit import progress
from benchkit.progress import RunProgress, RunsInFlight, describe, progress_file, reporting_to
from conftest import REPO, small_experiment


def _epoch(epoch: int, mae: float, seconds: float) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "valid_loss": 0.5, "valid_mae": mae, "seconds": seconds}


def test_a_run_in_a_worker_writes_its_progress_and_draws_nothing(tmp_path, capsys):
    with reporting_to(tmp_path), RunProgress("r1", 10, "mae", maximize=False) as run:
        assert not progress.can_draw()
        for epoch, mae in enumerate([0.9, 0.4, 0.6], start=1):
            run.epoch(_epoch(epoch, mae, 2.0 * epoch))
    assert capsys.readouterr() == ("", "")
    state = json.loads(progress_file(tmp_path, "r1").read_text())
    assert (state["epoch"], state["epochs"], state["best"], state["best_epoch"]) == (3, 10, 0.4, 2)
    assert describe(state) == "epoch 3/10  best valid_mae 0.4000 (epoch 2)  ETA 0:00:14"


def test_the_best_of_a_maximised_metric_is_its_largest_value(tmp_path):
    with reporting_to(tmp_path), RunProgress("r1", 5, "qwk", maximize=True) as run:
        for epoch, qwk in enumerate([0.2, 0.7, 0.5], start=1):
            run.epoch({**_epoch(epoch, 0.5, epoch), "valid_qwk": qwk})
    state = json.loads(progress_file(tmp_path, "r1").read_text())
    assert (state["best"], state["best_epoch"]) == (0.7, 2)


def _report(out, run_id, epochs, maes):
    with reporting_to(out), RunProgress(run_id, epochs, "mae") as run:
        for epoch, mae in enumerate(maes, start=1):
            run.epoch(_epoch(epoch, mae, 1.5 * epoch))


def test_the_driver_draws_one_line_per_run_in_flight_and_the_finished_count(tmp_path, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(progress, "log_console", Console(file=screen, force_terminal=True, width=160))
    with RunsInFlight(tmp_path, total=3) as display:
        display.started("run-a")
        display.started("run-b")
        _report(tmp_path, "run-a", 8, [0.9, 0.7])
        _report(tmp_path, "run-b", 4, [0.8])
        display.refresh()
        display._progress.refresh()
        shown = screen.getvalue()
        assert "run-a" in shown and "epoch 2/8  best valid_mae 0.7000 (epoch 2)  ETA 0:00:09" in shown
        assert "run-b" in shown and "epoch 1/4" in shown and "0/3" in shown
        display.finished("run-a", {"status": "ok"})
        display._progress.refresh()
        assert "1/3" in screen.getvalue() and not progress_file(tmp_path, "run-a").exists()
        assert [t.description for t in display._progress.tasks] == ["[bold]finished runs", "run-b"]
    assert screen.getvalue().count("run-b") >= 1


def test_without_a_terminal_the_driver_prints_a_line_per_epoch_and_per_finished_run(tmp_path, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(progress, "log_console", Console(file=screen, force_terminal=False, width=200))
    with RunsInFlight(tmp_path, total=1) as display:
        display.started("run-a")
        _report(tmp_path, "run-a", 8, [0.9])
        display.refresh()
        display.refresh()  # nothing new: nothing printed
        _report(tmp_path, "run-a", 8, [0.9, 0.5])
        display.finished("run-a", {"status": "ok"})
    lines = screen.getvalue().splitlines()
    assert lines == ["run-a epoch 1/8  best valid_mae 0.9000 (epoch 1)  ETA 0:00:10",
                     "run-a epoch 2/8  best valid_mae 0.5000 (epoch 2)  ETA 0:00:09",
                     "finished 1/1 run(s): run-a (ok)"]
    assert not (tmp_path / progress.PROGRESS_FOLDER).exists()


def test_jobs_2_workers_print_no_progress_and_the_driver_reports_every_run(tmp_path):
    experiment = small_experiment(tmp_path, seeds=[0, 1])
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "benchkit", "run", str(experiment), "--out", str(out), "--jobs", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    log = done.stderr
    assert "training up to" not in log  # what a run drawing its own progress says first
    for seed in (0, 1):
        run_id = f"tiny_cnn-regression__s{seed}"
        assert f"{run_id} epoch 2/2  best valid_loss" in log, log
    assert "finished 2/2 run(s)" in log
    assert not (out / progress.PROGRESS_FOLDER).exists()
