"""Interrupted runs resume to the same results; finished runs are skipped; changed configs are not resumed."""

import random
import shutil
import signal

import pandas as pd
import pytest
import yaml

from benchkit.cli import main
from benchkit.execution.claims import claim
from benchkit.io import read_json
from benchkit.progress import RunProgress
from benchkit_process import assert_same_results, run, run_results
from conftest import TINY_PLUGIN, small_experiment

RUN = "tiny_cnn-regression__s3"


def resumable_experiment(tmp_path, epochs: int = 8, train_size: int = 96, **train):
    """Augmentation (global torch RNG), EMA, a per-step scheduler, dropout and early stopping: every
    piece of state a resumed run must restore."""
    recipe = {"epochs": epochs, "batch_size": 8, "device": "cpu", "optimizer": {"lr": 3e-3},
              "scheduler": {"name": "onecycle"}, "augmentation": "reference",
              "ema": {"enabled": True, "update_after_step": 5, "update_every": 2, "beta": 0.9},
              "early_stopping": {"patience": 4, "monitor": "qwk"}, **train}
    data = {"format": "synthetic", "image_size": 32,
            "synthetic": {"num_classes": 4, "train": train_size, "valid": 24, "test": 24, "image_size": 32}}
    return small_experiment(tmp_path, seeds=[3], data=data, train=recipe)


KILL_SWITCH = TINY_PLUGIN.parent / "kill_switch.py"
STEPS_PER_EPOCH = 6  # 48 training images in batches of 8
KILL_SEED = 2024


def seeded_kill_points(seed: int = KILL_SEED) -> list[tuple[str, int]]:
    """Where the victims die: as a seeded optimizer step in epoch 2 or 3 begins (before early stopping could
    end the run), inside the write of a seeded epoch's resume state, inside the write of the best weights after
    the last epoch, and inside the write of ``metrics.json`` (the resume state must outlive it). Each entry:
    (``BENCHKIT_TEST_KILL`` value, the epoch the resumed run restarts after)."""
    rng = random.Random(seed)
    step = rng.randrange(STEPS_PER_EPOCH + 2, 3 * STEPS_PER_EPOCH)
    epoch = rng.randrange(2, 4)
    return [(f"step:{step}", (step - 1) // STEPS_PER_EPOCH), (f"write:last.pt:{epoch}", epoch - 1),
            ("write:best.safetensors:1", 5), ("write:metrics.json:1", 5)]


@pytest.fixture(scope="module")
def killable(tmp_path_factory):
    """An experiment listing the kill switch, and its uninterrupted run (in a process of its own)."""
    tmp = tmp_path_factory.mktemp("killable")
    experiment = resumable_experiment(tmp, epochs=5, train_size=48)
    raw = yaml.safe_load(experiment.read_text())
    raw["plugins"].append(str(KILL_SWITCH))
    experiment.write_text(yaml.safe_dump(raw, sort_keys=False))
    reference = run(experiment, tmp / "reference")
    assert reference.returncode == 0, reference.stderr
    return experiment, run_results(tmp / "reference" / "runs" / RUN)


@pytest.mark.parametrize("kill, restart_epoch", seeded_kill_points())
def test_run_killed_at_a_seeded_moment_resumes_to_identical_results(killable, tmp_path, kill, restart_epoch):
    experiment, reference = killable
    victim_dir = tmp_path / "victim" / "runs" / RUN
    victim = run(experiment, tmp_path / "victim", env={"BENCHKIT_TEST_KILL": kill})
    assert victim.returncode == -signal.SIGKILL, f"the run was not killed at {kill}:\n{victim.stderr}"
    assert not (victim_dir / "metrics.json").exists()
    if kill.startswith("write:"):
        assert list(victim_dir.glob(".*.tmp")), "the kill inside a write left no temporary file"

    resumed = run(experiment, tmp_path / "victim")
    assert resumed.returncode == 0, resumed.stderr
    if restart_epoch:
        assert f"resuming from epoch {restart_epoch} of 5" in resumed.stderr, resumed.stderr
    else:
        assert "resuming" not in resumed.stderr
    assert_same_results(reference, run_results(victim_dir))
    assert not list(victim_dir.glob(".*.tmp")), "temporary files of the killed writer were left behind"
    assert not (victim_dir / "last.pt").exists(), "the finished run kept its resume state"
    board = pd.read_csv(tmp_path / "victim" / "leaderboard.csv")
    assert board.run_id.tolist() == [RUN] and board.status.tolist() == ["ok"]


def _interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Raise KeyboardInterrupt (Ctrl-C) once ``epoch`` is reported, before its checkpoint is written."""
    report = RunProgress.epoch

    def report_then_interrupt(self, row):
        report(self, row)
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunProgress, "epoch", report_then_interrupt)


TIMM_RECIPE = {"optimizer": {"lr": 3e-3, "weight_decay": 0.05, "layer_decay": 0.7, "filter_bias_and_bn": True},
               "scheduler": {"name": "cosine", "warmup_epochs": 2}}


@pytest.mark.parametrize("recipe", [{}, TIMM_RECIPE], ids=["onecycle", "timm-warmup-cosine-layer-decay"])
def test_interrupted_run_continues_from_its_checkpoint(tmp_path, monkeypatch, capsys, recipe):
    experiment = resumable_experiment(tmp_path, epochs=4, train_size=64, **recipe)
    assert main(["run", str(experiment), "--out", str(tmp_path / "reference"), "--quiet"]) == 0
    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 3)
        assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 130
    assert (out / "runs" / RUN / "last.pt").is_file() and not (out / "runs" / RUN / "metrics.json").exists()
    capsys.readouterr()
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    assert "resuming from epoch 2 of 4" in capsys.readouterr().err
    assert_same_results(run_results(tmp_path / "reference" / "runs" / RUN), run_results(out / "runs" / RUN))
    assert not (out / "runs" / RUN / "last.pt").exists()


def test_run_killed_after_early_stopping_does_not_train_further(tmp_path, capsys):
    experiment = resumable_experiment(tmp_path, epochs=5, train_size=32, keep_resume_state=True,
                                      early_stopping={"patience": 1, "min_delta": 100.0})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    finished = run_results(out / "runs" / RUN)
    assert len(finished["history"]) == 2
    (out / "runs" / RUN / "metrics.json").unlink()
    capsys.readouterr()
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    assert "resuming from epoch 2 of 5" in capsys.readouterr().err
    assert_same_results(finished, run_results(out / "runs" / RUN))


@pytest.fixture(scope="module")
def finished_small(tmp_path_factory):
    """A finished two-epoch run that kept its resume state, to copy (an interrupted one: without its
    ``metrics.json``): (experiment file, output folder)."""
    tmp = tmp_path_factory.mktemp("finished")
    experiment = small_experiment(tmp)
    assert main(["run", str(experiment), "--out", str(tmp / "out"), "--quiet",
                 "--set", "train.keep_resume_state=true"]) == 0
    return experiment, tmp / "out"


SMALL_RUN = "tiny_cnn-regression__s0"


def _copy(finished_small, tmp_path, interrupted: bool):
    experiment, out = finished_small
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    if interrupted:
        (copy / "runs" / SMALL_RUN / "metrics.json").unlink()
    return experiment, copy, copy / "runs" / SMALL_RUN


def test_rerun_skips_finished_runs(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=False)
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    assert main(["run", str(experiment), "--out", str(out), "--quiet",
                 "--set", "evaluation.sort_by=test_qwk"]) == 0
    assert "finished earlier, skipped" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_changed_config_is_said_and_started_fresh(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=True)
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--set", "train.optimizer.lr=0.001"]) == 0
    err = capsys.readouterr().err
    assert "config changed" in err and "train.optimizer.lr: 0.003 -> 0.001" in err and "starting it fresh" in err
    assert "resuming" not in err
    assert "lr: 0.001" in (run_dir / "config.yaml").read_text()
    assert len(pd.read_csv(run_dir / "history.csv")) == 2


def test_finished_run_with_changed_config_is_run_again(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=False)
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--set", "train.epochs=3"]) == 0
    assert "train.epochs: 2 -> 3" in capsys.readouterr().err
    assert read_json(run_dir / "metrics.json")["row"]["epochs"] == 3


def test_refuse_changed_exits_2_and_keeps_the_checkpoint(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=True)
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    code = main(["run", str(experiment), "--out", str(out), "--quiet", "--refuse-changed",
                 "--set", "train.optimizer.lr=0.001"])
    err = capsys.readouterr().err
    assert code == 2
    assert SMALL_RUN in err and "train.optimizer.lr: 0.003 -> 0.001" in err and "--fresh" in err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_unreadable_checkpoint_is_said_and_the_run_started_fresh(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=True)
    checkpoint = run_dir / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])  # truncated by a bad copy
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{SMALL_RUN}: its checkpoint" in err and "cannot be read" in err and "starting it fresh" in err
    assert "resuming" not in err
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    assert_same_results(run_results(finished_small[1] / "runs" / SMALL_RUN), run_results(run_dir))


def test_fresh_trains_a_finished_run_again(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=False)
    (run_dir / "stale.txt").write_text("from an earlier attempt")
    before = (run_dir / "metrics.json").stat().st_mtime_ns
    assert main(["run", str(experiment), "--out", str(out), "--fresh", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{SMALL_RUN}: training up to" in err and "skipped" not in err
    assert (run_dir / "metrics.json").stat().st_mtime_ns > before and not (run_dir / "stale.txt").exists()
    assert_same_results(run_results(finished_small[1] / "runs" / SMALL_RUN), run_results(run_dir))


def test_fresh_leaves_a_run_that_another_process_holds_alone(finished_small, tmp_path, capsys):
    experiment, out, run_dir = _copy(finished_small, tmp_path, interrupted=True)
    files = lambda: {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".lock"}  # noqa: E731
    before = files()
    with claim(run_dir) as held:
        assert held
        main(["run", str(experiment), "--out", str(out), "--fresh", "--quiet"])
    assert f"{SMALL_RUN}: running in another process, skipped" in capsys.readouterr().err
    assert files() == before
