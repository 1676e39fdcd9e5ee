"""Tuning: every configuration gets the same trial budget on the validation split, then runs with its best.

A configuration is a model x grid cell; its study (:mod:`~benchkit.execution.studies`) lives in
``<out>/trials/<study>/``. Trials are asked from Optuna here (ask-and-tell) and executed by the experiment's
own executor as runs of their own (``trial-NNN/`` folders): trained for ``tuning.epochs`` on the first
fold and seed of the configuration, evaluated on the validation split only (the test split is neither
decoded nor scored). A rerun resumes an interrupted trial with its own parameters and never repeats a
finished one. The experiment's runs are then made with each configuration's best parameters
(:attr:`~benchkit.config.schema.RunSpec.tuned`).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from benchkit.config.schema import ExperimentConfig, RunSpec, TunedParams, TuningConfig
from benchkit.execution.claims import claim, complete_tracking_of, empty_run_dir, prepare_resume
from benchkit.execution.executors import Executor, RunTask
from benchkit.execution.input_checks import check_inputs
from benchkit.execution.search_space import configurations, distributions, trial_spec, validation_metric, with_params
from benchkit.execution.studies import direction, make_sampler, open_study
from benchkit.progress import RunsInFlight, log_console
from benchkit.results import results_folder
from benchkit.results.budget_curves import write_budget_curves


def tune(config: ExperimentConfig, runs: list[RunSpec], out_dir: Path, executor: Executor,
         quiet: bool = False, given_up: set[str] | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
    """Run every configuration's missing trials through ``executor``; return ``runs`` with each
    configuration's best parameters set (and :class:`TunedParams` saying so), and the trials (finished earlier
    ones sent to the trackers that did not receive all of them, except those in ``given_up``, which collects the
    trackers that do not answer: the command's runs then do not ask them again)."""
    tuning, out_dir = config.tuning, Path(out_dir).resolve()
    metric = validation_metric(config)
    groups = configurations(runs)
    check_inputs([trial_spec(specs[0], tuning, name, 0, {}, out_dir, metric) for name, specs in groups.items()])
    studies = {name: open_study(results_folder.study_journal(out_dir, name), name, direction(tuning, metric),
                                tuning.pruner) for name in groups}
    space, claims = distributions(tuning), {}
    trials = _finished_trials(studies, groups, tuning, out_dir, metric, set() if given_up is None else given_up)

    def trial_tasks():
        for index, (name, specs) in enumerate(groups.items()):
            study, budget = studies[name], tuning.trials
            for frozen in study.get_trials(deepcopy=False, states=(_state("RUNNING"),)):
                task = claimed(name, specs[0], frozen.number, frozen.params, resume=True)
                if task is not None:
                    yield task
            while len(study.get_trials(deepcopy=False)) < budget:
                study.sampler = make_sampler(tuning.sampler, len(study.get_trials(deepcopy=False)))
                trial = study.ask(space)
                task = claimed(name, specs[0], trial.number, trial.params, resume=False)
                if task is not None:
                    yield task

    def claimed(name: str, base: RunSpec, number: int, params: dict, resume: bool) -> RunTask | None:
        """The trial's task once this process holds its folder; None while another process runs it."""
        spec = trial_spec(base, tuning, name, number, params, out_dir, metric)
        folder = results_folder.trial_dir(out_dir, name, number)
        held = ExitStack()
        if not held.enter_context(claim(folder)):
            held.close()
            return None
        claims[spec.run_id] = held
        trials.append(spec)
        if not resume:
            empty_run_dir(folder)
        again = prepare_resume(spec, folder)
        log_console.print(f"{name}: trial {number} {_describe(params)}" + (" (resuming)" if again else ""))
        return RunTask(spec, out_dir, resume=again, quiet=quiet)

    def ended(task: RunTask, row: dict) -> None:
        claims.pop(task.spec.run_id).close()
        study, number = studies[task.spec.trial.study], task.spec.trial.number
        value = row.get(metric)
        if row["status"] == "ok" and isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(number, float(value), skip_if_finished=True)
        else:
            study.tell(number, state=_state("PRUNED" if row["status"] == "pruned" else "FAIL"),
                       skip_if_finished=True)
            log_console.print(f"{task.spec.run_id}: {row['status']} ({row.get('error') or 'no ' + metric})")

    missing = sum(max(0, tuning.trials - len(s.get_trials(deepcopy=False, states=_finished_states())))
                  for s in studies.values())
    try:
        executor.run(trial_tasks(), ended, display=RunsInFlight(out_dir, total=missing, quiet=quiet), close=False)
    finally:
        for held in claims.values():
            held.close()
    frame = trials_frame(studies, metric, tuning.trials)
    write_budget_curves(out_dir, frame, plots=config.evaluation.plots)
    tuned = [_tuned(spec, name, studies[name], tuning.trials) for name, specs in groups.items() for spec in specs]
    return tuned, trials


def _finished_trials(studies: dict, groups: dict, tuning: TuningConfig, out_dir: Path, metric: str,
                     given_up: set[str]) -> list[RunSpec]:
    """The trials earlier commands finished, each sent to the trackers that did not receive all of it (and have
    not been given up)."""
    trials = []
    for name, specs in groups.items():
        for frozen in studies[name].get_trials(deepcopy=False, states=_finished_states()):
            spec = trial_spec(specs[0], tuning, name, frozen.number, frozen.params, out_dir, metric)
            trials.append(spec)
            note = complete_tracking_of(spec, results_folder.trial_dir(out_dir, name, frozen.number), out_dir,
                                        given_up)
            if note:
                log_console.print(f"{spec.run_id}: finished earlier{note}")
    return trials


def _tuned(spec: RunSpec, name: str, study, budget: int) -> RunSpec:
    finished = study.get_trials(deepcopy=False, states=_finished_states())
    complete = [t for t in finished if t.state == _state("COMPLETE")]
    if not complete:
        log_console.print(f"[red]{name}: no trial finished with a value; its runs keep the experiment's values[/]")
        params: dict = {}
    else:
        params = study.best_trial.params
    tuned = TunedParams(study=name, budget=budget, trials=len(finished), params=params)
    return with_params(spec, params).model_copy(update={"tuned": tuned})


def trials_frame(studies: dict, metric: str, budget: int) -> pd.DataFrame:
    """One row per trial of every study: its number, state, value and parameters."""
    rows = []
    for name, study in studies.items():
        for t in study.get_trials(deepcopy=False):
            rows.append({"study": name, "trial": t.number, "state": t.state.name, "metric": metric,
                         "direction": study.direction.name.lower(), "value": t.value, "budget": budget,
                         **{f"param:{k}": v for k, v in t.params.items()}})
    return pd.DataFrame(rows)


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _state(name: str):
    from optuna.trial import TrialState
    return TrialState[name]


def _finished_states() -> tuple:
    return tuple(_state(n) for n in ("COMPLETE", "PRUNED", "FAIL"))
