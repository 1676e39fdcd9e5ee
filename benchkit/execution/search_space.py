"""What a trial is: a configuration's study name, its search space, and its runs with chosen parameters.

Below the planning and the tuning loop (:mod:`~benchkit.execution.tuning`), so that a plan checks the
search space before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchkit.config.schema import (DataConfig, ExperimentConfig, ModelConfig, RunSpec, TrainConfig,
                                    TrialInfo)
from benchkit.config.tuning import Choices, FloatRange, TuningConfig
from benchkit.errors import ConfigError
from benchkit.results import results_folder


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
