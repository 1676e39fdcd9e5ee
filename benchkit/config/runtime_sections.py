"""The sections on where runs execute and where they are logged: ``resources`` and ``tracking``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from benchkit.config.limits import StrictModel as _Strict


class ResourcesConfig(_Strict):
    """What one run asks of a Ray cluster; ``gpus`` below 1 packs several runs on one GPU."""

    cpus: float = Field(1, gt=0)
    gpus: float = Field(0, ge=0)

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"a fraction of a GPU is allowed only below 1 (got {value}; use 0.5, 1, 2, ...)")
        return value


class MlflowTrackingConfig(_Strict):
    """Where MLflow runs go; a relative SQLite file is taken inside the output folder."""

    uri: str = "sqlite:///mlruns.db"
    experiment: str | None = Field(None, description="MLflow experiment name; default: the experiment's name")
    artifact_location: str | None = Field(None, description="default: mlartifacts/ beside the SQLite file")
    log_checkpoint: bool = True


class TrackingConfig(_Strict):
    """Optional trackers each run is logged to (see :mod:`benchkit.results.tracking`)."""

    mlflow: MlflowTrackingConfig | None = None
    tensorboard: Path | None = Field(None, description="TensorBoard log folder (relative: inside the output folder)")
