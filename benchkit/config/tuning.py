"""The ``tuning:`` section of an experiment: the same trial budget for every configuration.

Each configuration (model x grid cell) gets ``trials`` trials drawn from ``space`` by a seeded Optuna
sampler, trained for ``epochs`` epochs and judged on ``metric`` of the validation split; its runs are then
made with the best parameters (:mod:`benchkit.execution.tuning`). ``space`` keys are config paths like grid
keys: inside a model entry (``train.optimizer.lr``, ``backbone.dropout``, ``head.<option>``) or ``data.*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SAMPLERS = ("qmc", "tpe", "random")
PRUNERS = ("none", "median", "successive_halving")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FloatRange(_Strict):
    """A float in ``[low, high]``, log-uniform when ``log`` (learning rates, weight decays)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "FloatRange":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self


class IntRange(_Strict):
    """An integer in ``[low, high]`` (both included), log-uniform when ``log``."""

    int: tuple[int, int]
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "IntRange":
        low, high = self.int
        if not low < high:
            raise ValueError(f"int: [{low}, {high}]: the first must be below the second")
        if self.log and low <= 0:
            raise ValueError(f"a log range needs a first value > 0 (got {low})")
        return self


class Choices(_Strict):
    """One of the listed values."""

    choices: list[Any] = Field(min_length=1)


Dimension = Union[FloatRange, IntRange, Choices]


class SamplerConfig(_Strict):
    """The seeded Optuna sampler that draws each configuration's trials."""

    name: Literal["qmc", "tpe", "random"] = Field("qmc", description="qmc: scrambled Sobol; tpe; random")
    seed: int = 0


class PrunerConfig(_Strict):
    """An Optuna pruner: stops a trial early on its per-epoch validation metric."""

    name: Literal["none", "median", "successive_halving"] = "none"
    warmup_epochs: int = Field(1, ge=0, description="median: epochs before a trial may be stopped")
    startup_trials: int = Field(3, ge=0, description="median: finished trials before any trial is stopped")
    min_resource: Union[Literal["auto"], int] = Field(1, description="successive halving: epochs of the first rung")
    reduction_factor: int = Field(3, ge=2)


class TuningConfig(_Strict):
    """What every configuration's tuning is: a search space, a budget, a metric and a sampler."""

    space: dict[str, Dimension] = Field(min_length=1, description="config path -> {low, high, log} | "
                                                                  "{int: [low, high]} | {choices: [...]}")
    trials: int = Field(ge=1, description="the budget: trials per configuration, the same for all")
    epochs: int | None = Field(None, ge=1, description="epochs of a trial; default: train.epochs")
    metric: str | None = Field(None, description="validation column to optimise (valid_mae, valid_qwk, ...); "
                                                 "default: evaluation.sort_by on the valid split")
    direction: Literal["auto", "minimize", "maximize"] = "auto"
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()

    @field_validator("space", mode="before")
    @classmethod
    def _lists_are_choices(cls, space: Any) -> Any:
        """A plain list is shorthand for ``{choices: [...]}``."""
        if isinstance(space, dict):
            return {k: {"choices": v} if isinstance(v, list) else v for k, v in space.items()}
        return space

    @field_validator("space")
    @classmethod
    def _distinct_columns(cls, space: dict[str, Dimension]) -> dict[str, Dimension]:
        """Each path names its own leaderboard column (``tuned_<last part>``)."""
        columns: dict[str, str] = {}
        for path in space:
            column = tuned_column(path)
            if column in columns:
                raise ValueError(f"{columns[column]!r} and {path!r} would share the column {column!r}")
            columns[column] = path
        return space

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, metric: str | None) -> str | None:
        if metric is not None and not metric.startswith("valid_"):
            raise ValueError(f"{metric!r}: tuning reads the validation split only; name a valid_* column "
                             f"(e.g. valid_mae)")
        return metric


def tuned_column(path: str) -> str:
    """The leaderboard column of a tuned parameter: ``train.optimizer.lr`` -> ``tuned_lr``."""
    parts = path.split(".")
    return f"tuned_{parts[-2] if parts[-1] == 'name' and len(parts) > 1 else parts[-1]}"


class TrialInfo(_Strict):
    """A run that is a tuning trial: which study, which trial, where its journal lies, what it reports."""

    study: str
    number: int = Field(ge=0)
    journal: Path
    metric: str
    pruner: PrunerConfig = PrunerConfig()


class TunedParams(_Strict):
    """The tuned parameters a run was made with, and the budget that found them."""

    study: str
    budget: int
    trials: int
    params: dict[str, Any]
