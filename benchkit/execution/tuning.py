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
from typing import Any

import pandas as pd

from benchkit.config.schema import (DataConfig, ExperimentConfig, ModelConfig, RunSpec, TrainConfig,
                                    TrialInfo, TunedParams)
from benchkit.config.tuning import Choices, FloatRange, TuningConfig
from benchkit.errors import ConfigError
from benchkit.execution.claims import claim, empty_run_dir, prepare_resume
from benchkit.execution.executors import Executor, RunTask
from benchkit.execution.input_checks import check_inputs
from benchkit.execution.studies import direction, make_sampler, open_study
from benchkit.progress import RunsInFlight, log_console
from benchkit.results import results_folder
from benchkit.results.budget_curves import write_budget_curves


def validation_metric(config: ExperimentConfig) -> str:
    """The column tuning optimises: ``tuning.metric``, else ``evaluation.sort_by`` read on the valid split."""
    if config.tuning.metric:
        return config.tuning.metric
    sort_by = config.evaluation.sort_by
    for split in ("test_", "valid_"):
        if sort_by.startswith(split):
            return "valid_" + sort_by[len(split):]
    return "valid_" + sort_by


def study_name(spec: RunSpec) -> str:
    """A configuration's study: the run id without its seed and fold (``tiny-coral__lr=0.1``)."""
    pieces = spec.run_id.split("__")[:-1]
    return "__".join(pieces[:-1] if spec.fold is not None else pieces)


def configurations(runs: list[RunSpec]) -> dict[str, list[RunSpec]]:
    """The runs of each configuration, by study name, in the experiment's order."""
    grouped: dict[str, list[RunSpec]] = {}
    for spec in runs:
        grouped.setdefault(study_name(spec), []).append(spec)
    return grouped


def with_params(spec: RunSpec, params: dict[str, Any]) -> RunSpec:
    """``spec`` with each config path of ``params`` set (``train.*``, ``data.*`` or inside the model)."""
    raw = spec.model_dump()
    for path, value in params.items():
        section, _, rest = path.partition(".")
        if section in ("train", "data"):
            _set(raw[section], rest, value, path)
        else:
            _set(raw["model"], path, value, path)
    try:
        return RunSpec.model_validate({**raw, "train": TrainConfig.model_validate(raw["train"]),
                                       "data": DataConfig.model_validate(raw["data"]),
                                       "model": ModelConfig.model_validate(raw["model"])})
    except ValueError as exc:
        raise ConfigError(f"tuning.space: {params} do not fit {spec.run_id}: {' '.join(str(exc).split())}") from None


def _set(node: dict, path: str, value: Any, full: str) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ConfigError(f"tuning.space: {full!r} is not a path of the experiment's config")
        node = node[part]
    node[parts[-1]] = value


def check_space(config: ExperimentConfig, runs: list[RunSpec]) -> None:
    """Every configuration accepts a point of the search space (a ConfigError naming the path otherwise)."""
    if config.tuning is None:
        return
    probe = {path: dim.choices[0] if isinstance(dim, Choices) else dim.low if isinstance(dim, FloatRange)
             else dim.int[0] for path, dim in config.tuning.space.items()}
    for spec in configurations(runs).values():
        with_params(spec[0], probe)


def distributions(tuning: TuningConfig) -> dict:
    """The search space as Optuna distributions, keyed by config path."""
    import optuna.distributions as d

    space = {}
    for path, dim in tuning.space.items():
        if isinstance(dim, Choices):
            space[path] = d.CategoricalDistribution(dim.choices)
        elif isinstance(dim, FloatRange):
            space[path] = d.FloatDistribution(dim.low, dim.high, log=dim.log)
        else:
            space[path] = d.IntDistribution(dim.int[0], dim.int[1], log=dim.log)
    return space


def trial_spec(base: RunSpec, tuning: TuningConfig, study: str, number: int, params: dict, out_dir: Path,
               metric: str) -> RunSpec:
    """Trial ``number`` of ``study``: the configuration's first run with ``params``, ``tuning.epochs``
    epochs, evaluated on the validation split only."""
    spec = with_params(base, params)
    train = spec.train.model_copy(update={"epochs": tuning.epochs or spec.train.epochs})
    evaluation = spec.evaluation.model_copy(update={"splits": ["valid"], "plots": False, "ensembles": []})
    info = TrialInfo(study=study, number=number, journal=results_folder.study_journal(out_dir, study),
                     metric=metric, pruner=tuning.pruner)
    return spec.model_copy(update={"run_id": f"{study}__trial-{number:03d}", "train": train,
                                   "evaluation": evaluation, "trial": info, "build": None})


def tune(config: ExperimentConfig, runs: list[RunSpec], out_dir: Path, executor: Executor,
         quiet: bool = False) -> list[RunSpec]:
    """Run every configuration's missing trials through ``executor``; return ``runs`` with each
    configuration's best parameters set (and :class:`TunedParams` saying so)."""
    tuning, out_dir = config.tuning, Path(out_dir).resolve()
    metric = validation_metric(config)
    groups = configurations(runs)
    check_inputs([trial_spec(specs[0], tuning, name, 0, {}, out_dir, metric) for name, specs in groups.items()])
    studies = {name: open_study(results_folder.study_journal(out_dir, name), name, direction(tuning, metric),
                                tuning.pruner) for name in groups}
    space, claims = distributions(tuning), {}

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
    return [_tuned(spec, name, studies[name], tuning.trials) for name, specs in groups.items() for spec in specs]


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
