"""Tuning: the same trial budget per configuration on the validation split, then runs with the best parameters.

A comparison whose shared learning rate favours one configuration changes its outcome once each configuration
is tuned; trials never read the test split; an interrupted tuning resumes without repeating a trial; ``--jobs 2``
and Ray run exactly the budget; the budget curves match Dodge et al.'s estimator computed by enumeration.
"""

from __future__ import annotations

import itertools
import signal

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from benchkit.cli.main import main
from benchkit.config.validation import load_experiment
from benchkit.errors import ConfigError
from benchkit.execution import runner
from benchkit.execution.studies import journal_storage
from benchkit.io import read_json
from benchkit.results import results_folder
from benchkit.results.budget_curves import budget_curves, expected_best
from benchkit_process import run
from conftest import TINY_PLUGIN, small_experiment

KILL_SWITCH = TINY_PLUGIN.parent / "kill_switch.py"
LR_SPACE = {"train.optimizer.lr": {"low": 3e-3, "high": 2.0, "log": True}}


def _studies(out) -> dict[str, list]:
    """Every study of a results folder: its trials as Optuna reads them from the journal."""
    found = {}
    for folder in sorted((out / results_folder.TRIALS).iterdir()):
        if folder.is_dir():
            storage = journal_storage(results_folder.study_journal(out, folder.name))
            study = optuna.load_study(study_name=folder.name, storage=storage)
            found[folder.name] = study.get_trials()
    return found


def _sgd_versus_adamw(tmp_path, tuning: dict | None):
    """SGD needs a learning rate near 1, the frozen AdamW model is best near 0.01 but has a lower ceiling."""
    models = [{"name": "sgd", "backbone": "tiny_cnn", "head": "regression", "train": {"optimizer": {"name": "sgd"}}},
              {"name": "adamw", "backbone": {"name": "tiny_cnn", "freeze": 2}, "head": "regression"}]
    changes = {"models": models, "train": {"epochs": 3, "batch_size": 16, "optimizer": {"lr": 0.01},
                                           "augmentation": "none", "ema": {"enabled": False}}}
    if tuning:
        changes["tuning"] = tuning
    return small_experiment(tmp_path, **changes)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flip")
    shared, tuned = tmp / "shared", tmp / "tuned"
    shared.mkdir(), tuned.mkdir()
    assert main(["run", str(_sgd_versus_adamw(shared, None)), "--out", str(shared / "out"), "--quiet"]) == 0
    tuning = {"trials": 6, "space": LR_SPACE, "sampler": {"name": "qmc", "seed": 0}}
    assert main(["run", str(_sgd_versus_adamw(tuned, tuning)), "--out", str(tuned / "out"), "--quiet"]) == 0
    return shared / "out", tuned / "out"


def test_tuning_each_configuration_changes_the_outcome_of_a_shared_learning_rate(flipped):
    shared_out, tuned_out = flipped
    shared = pd.read_csv(results_folder.leaderboard_path(shared_out)).set_index("model")
    tuned = pd.read_csv(results_folder.leaderboard_path(tuned_out)).set_index("model")
    assert shared.loc["adamw", "test_mae"] < shared.loc["sgd", "test_mae"]  # the shared lr suits AdamW
    assert tuned.loc["sgd", "test_mae"] < tuned.loc["adamw", "test_mae"]  # each tuned: SGD is the better one
    assert tuned.loc["sgd", "tuned_lr"] > 10 * tuned.loc["adamw", "tuned_lr"]


def test_the_leaderboard_states_the_budget_and_the_best_parameters_of_each_configuration(flipped):
    _, out = flipped
    board = pd.read_csv(results_folder.leaderboard_path(out)).set_index("model")
    studies = _studies(out)
    assert sorted(studies) == ["adamw", "sgd"]
    for name, trials in studies.items():
        assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)  # the same budget for both
        best = min(trials, key=lambda t: t.value)
        assert board.loc[name, "tuning_budget"] == 6 and board.loc[name, "tuning_trials"] == 6
        assert board.loc[name, "tuned_lr"] == pytest.approx(best.params["train.optimizer.lr"], rel=1e-12)
        assert best.value == pytest.approx(read_json(out / "trials" / name / f"trial-{best.number:03d}"
                                                     / "metrics.json")["row"]["valid_mae"])
        saved = yaml.safe_load((results_folder.run_dir(out, board.loc[name, "run_id"]) / "config.yaml").read_text())
        assert saved["train"]["optimizer"]["lr"] == pytest.approx(best.params["train.optimizer.lr"], rel=1e-12)
        assert saved["train"]["epochs"] == 3 and saved["tuned"]["budget"] == 6


def test_budget_curves_are_written_for_every_configuration(flipped):
    _, out = flipped
    curves = pd.read_csv(results_folder.budget_curves_path(out))
    trials = pd.read_csv(results_folder.trials_table_path(out))
    for name, group in curves.groupby("study"):
        values = trials.loc[trials["study"] == name, "value"].to_numpy()
        assert group["k"].tolist() == list(range(1, 7))
        assert group["expected_best"].iloc[0] == pytest.approx(values.mean())
        assert group["expected_best"].iloc[-1] >= values.min()
        assert group["expected_best"].is_monotonic_decreasing


@pytest.mark.parametrize("maximize", [True, False])
def test_expected_best_matches_enumerating_every_draw(maximize):
    values = np.array([0.3, 0.9, 0.5, 0.5, 0.1])
    for k in (1, 2, 3):
        draws = itertools.product(values, repeat=k)  # every ordered draw with replacement, equally likely
        best = [max(d) if maximize else min(d) for d in draws]
        assert expected_best(values, k, maximize) == pytest.approx(np.mean(best), rel=1e-12)


def test_budget_curves_leave_out_trials_that_did_not_complete():
    trials = pd.DataFrame({"study": "a", "trial": [0, 1, 2], "state": ["COMPLETE", "PRUNED", "COMPLETE"],
                           "value": [0.4, 9.0, 0.2], "metric": "valid_mae", "direction": "minimize", "budget": 3})
    curves = budget_curves(trials)
    assert curves["completed"].tolist() == [2, 2]
    assert curves["expected_best"].tolist() == pytest.approx([0.3, 0.2 * 0.75 + 0.4 * 0.25])


def test_trials_never_read_the_test_split(tmp_path, monkeypatch):
    decoded = []
    real = runner.decoded_split

    def recording(spec, dataset, name, size):
        decoded.append((spec.trial is not None, name))
        return real(spec, dataset, name, size)
    monkeypatch.setattr(runner, "decoded_split", recording)
    tuning = {"trials": 2, "epochs": 1, "space": LR_SPACE}
    experiment = small_experiment(tmp_path, tuning=tuning)
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    in_trials = {name for trial, name in decoded if trial}
    assert in_trials == {"train", "valid"}
    assert {name for trial, name in decoded if not trial} == {"train", "valid", "test"}  # the final run does
    folders = sorted((out / "trials").glob("*/trial-*"))
    assert len(folders) == 2
    for folder in folders:
        assert not list(folder.glob("predictions_test*")) and list(folder.glob("predictions_valid*"))
        assert not [c for c in read_json(folder / "metrics.json")["row"] if c.startswith("test_")]


@pytest.mark.slow
def test_killed_tuning_resumes_to_the_trials_of_an_uninterrupted_one(tmp_path):
    tuning = {"trials": 4, "epochs": 2, "space": {**LR_SPACE, "train.optimizer.weight_decay":
                                                  {"low": 1e-6, "high": 1e-2, "log": True}},
              "sampler": {"name": "random", "seed": 3}}
    experiment = small_experiment(tmp_path, plugins=[str(TINY_PLUGIN), str(KILL_SWITCH)], tuning=tuning)
    reference, victim = tmp_path / "reference", tmp_path / "victim"
    assert run(experiment, reference).returncode == 0
    killed = run(experiment, victim, env={"BENCHKIT_TEST_KILL": "step:17"})  # 3 steps an epoch, 2 epochs a trial: trial 2, epoch 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = {n: (victim / "trials/tiny_cnn-regression" / f"trial-{n:03d}/metrics.json").stat().st_mtime_ns
              for n in (0, 1)}
    assert not (victim / "trials/tiny_cnn-regression/trial-002/metrics.json").exists()
    rerun = run(experiment, victim)
    assert rerun.returncode == 0, rerun.stderr
    assert "trial 2" in rerun.stderr and "(resuming)" in rerun.stderr and "trial 0" not in rerun.stderr
    for n, stamp in before.items():  # finished trials are never run again
        assert (victim / "trials/tiny_cnn-regression" / f"trial-{n:03d}/metrics.json").stat().st_mtime_ns == stamp
    ours, theirs = _studies(victim)["tiny_cnn-regression"], _studies(reference)["tiny_cnn-regression"]
    assert [t.number for t in ours] == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in ours)
    assert [t.params for t in ours] == [t.params for t in theirs]
    assert len({t.params["train.optimizer.lr"] for t in ours}) == 4  # each trial draws its own point
    assert [t.value for t in ours] == [t.value for t in theirs]
    boards = [pd.read_csv(results_folder.leaderboard_path(o)) for o in (victim, reference)]
    assert boards[0]["tuned_lr"].tolist() == boards[1]["tuned_lr"].tolist()


@pytest.mark.slow
def test_two_jobs_run_exactly_the_budget(tmp_path):
    models = [{"backbone": "tiny_cnn", "head": "regression"}, {"backbone": "tiny_cnn", "head": "coral"}]
    experiment = small_experiment(tmp_path, models=models, tuning={"trials": 3, "epochs": 1, "space": LR_SPACE})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--jobs", "2"]) == 0
    studies = _studies(out)
    assert sorted(studies) == ["tiny_cnn-coral", "tiny_cnn-regression"]
    for name, trials in studies.items():
        assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
        assert len(list((out / "trials" / name).glob("trial-*"))) == 3
    board = pd.read_csv(results_folder.leaderboard_path(out))
    assert board["tuning_budget"].tolist() == [3, 3] and (board["status"] == "ok").all()


@pytest.fixture
def loopback_ray(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every node on 127.0.0.1
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_tuning_runs_its_trials_as_ray_tasks(loopback_ray, tmp_path):
    experiment = small_experiment(tmp_path, tuning={"trials": 2, "epochs": 1, "space": LR_SPACE})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--executor", "ray"]) == 0
    trials = _studies(out)["tiny_cnn-regression"]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert pd.read_csv(results_folder.leaderboard_path(out))["tuning_trials"].tolist() == [2]


def test_mlflow_runs_of_trials_name_their_study_and_number(tmp_path):
    from mlflow.tracking import MlflowClient
    experiment = small_experiment(tmp_path, tuning={"trials": 2, "epochs": 1, "space": LR_SPACE},
                                  tracking={"mlflow": {"uri": "sqlite:///mlruns.db", "log_checkpoint": False}})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("small").experiment_id])
    tags = sorted((r.data.tags.get("benchkit.study"), r.data.tags.get("benchkit.trial", "-"),
                   r.data.tags.get("benchkit.tuned", "-")) for r in runs)
    assert tags == [("tiny_cnn-regression", "-", "true"), ("tiny_cnn-regression", "0", "-"),
                    ("tiny_cnn-regression", "1", "-")]


def test_a_pruner_stops_trials_that_trail_the_study(tmp_path):
    tuning = {"trials": 5, "epochs": 3, "space": {"train.optimizer.lr": {"low": 1e-4, "high": 3.0, "log": True}},
              "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0}}
    experiment = small_experiment(tmp_path, tuning=tuning)
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    trials = _studies(out)["tiny_cnn-regression"]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert len(trials) == 5 and pruned
    for trial in pruned:
        row = read_json(out / "trials/tiny_cnn-regression" / f"trial-{trial.number:03d}/metrics.json")["row"]
        assert row["status"] == "pruned" and max(trial.intermediate_values) < 3


@pytest.mark.parametrize("tuning, message", [
    ({"trials": 2, "space": {"train.optimizer.lrr": {"low": 1e-3, "high": 1e-1}}}, "lrr"),
    ({"trials": 2, "space": {"train.optimizer.lr": {"low": 0.0, "high": 1e-1, "log": True}}}, "low > 0"),
    ({"trials": 2, "space": LR_SPACE, "metric": "test_mae"}, "valid_"),
    ({"trials": 0, "space": LR_SPACE}, "trials"),
])
def test_a_mistaken_tuning_section_is_a_config_error_before_any_training(tmp_path, capsys, tuning, message):
    experiment = small_experiment(tmp_path, tuning=tuning)
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "trials").exists()


def test_a_plain_list_is_a_categorical_dimension(tmp_path):
    config = load_experiment(small_experiment(tmp_path, tuning={"trials": 2, "space": {"train.batch_size": [8, 16]}}))
    assert config.tuning.space["train.batch_size"].choices == [8, 16]
    with pytest.raises(ConfigError, match="share the column"):
        load_experiment(small_experiment(tmp_path, tuning={"trials": 2, "space": {
            "train.optimizer.lr": [0.1], "train.scheduler.lr": [0.1]}}))


def test_the_report_shows_each_configurations_tuning_and_its_budget_curves(flipped):
    from benchkit.results.report import write_report
    _, out = flipped
    page = write_report(out).read_text()
    section = page[page.index("id='tuning'"):page.index("id='plots'")]
    assert "Dodge" in section and "best valid_mae" in section and "train.optimizer.lr" in section
    assert section.count("<tr><td>") == 2 and "alt='budget_curves'" in section
    assert (out / "plots" / "budget_curves.png").is_file()
