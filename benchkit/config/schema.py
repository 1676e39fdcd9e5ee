"""The experiment schema: strict pydantic models of an experiment file and of one resolved run.

Reading a file (bases, overrides, unknown keys) is :mod:`benchkit.config.validation`; expanding an
experiment into runs is :mod:`benchkit.config.expansion`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
import warnings

from pydantic import BaseModel, ConfigDict, Field, field_validator

from benchkit.config.limits import MAX_BATCH, MAX_IMAGE_SIZE, SEED_LIMIT, Seed  # noqa: F401
from benchkit.config.limits import StrictModel as _Strict
from benchkit.config.runtime_sections import MlflowTrackingConfig, ResourcesConfig, TrackingConfig  # noqa: F401
from benchkit.config.split_names import EVALUATED_SPLITS, SPLIT_STRATEGIES, strategy_of  # noqa: F401
from benchkit.config.tuning import PrunerConfig, TrialInfo, TunedParams, TuningConfig  # noqa: F401


class SyntheticConfig(_Strict):
    """Sizes of the built-in synthetic dataset (``data.format: synthetic``)."""

    num_classes: int = Field(6, ge=2, le=1000)
    train: int = Field(240, ge=1, le=1_000_000)
    valid: int = Field(60, ge=1, le=1_000_000)
    test: int = Field(60, ge=1, le=1_000_000)
    image_size: int = Field(64, ge=8, le=MAX_IMAGE_SIZE)
    seed: Seed = 0


DEFAULT_SUBJECT_REGEX = r"^(?P<subject>\d+)"
"""The subject of an image: the number its file name starts with (``14-Top-Down_jpg...`` -> 14)."""


class DataConfig(_Strict):
    """Where the images are, how they are read (a registered dataset format) and how they are split."""

    format: str = Field("roboflow_csv", description="a registered dataset format: roboflow_csv, imagefolder, csv, "
                                                    "medmnist_npz, synthetic or a plugin's (benchkit list formats)")
    root: Path | None = None
    classes: list[str] | None = None
    options: dict[str, Any] = Field({}, description="the format's own settings (csv: file, path_column, "
                                                    "label_column, ...; medmnist_npz: file)")
    image_size: int | None = Field(None, ge=8, le=MAX_IMAGE_SIZE, description="input size; default: the backbone's")
    synthetic: SyntheticConfig = SyntheticConfig()
    max_per_split: int | None = Field(None, ge=1, description="keep a seeded, stratified slice")
    split: Literal["official", "group_kfold", "group_holdout"] = "official"
    folds: int = Field(5, ge=2, le=100)
    fold: list[int] | None = None
    holdout_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: Seed = 0
    subject_regex: str = DEFAULT_SUBJECT_REGEX
    subject_with_label: bool = True
    cache: bool = Field(True, description="decode images once into the disk cache (memory-mapped)")
    cache_dir: Path | None = Field(None, description="default: $BENCHKIT_CACHE_DIR or ~/.cache/benchkit")
    feature_cache: bool = Field(True, description="train heads of fully frozen, unaugmented runs on "
                                                  "backbone features computed once")


class FreezeConfig(_Strict):
    """Stage-aware freezing: the stem plus the first ``stages`` stages, and/or named modules."""

    stages: int | Literal["all"] = 0
    modules: list[str] = []
    stem: bool | None = Field(None, description="freeze the stem too; default: when stages > 0")


class BackboneConfig(_Strict):
    """A registered backbone and how to initialise, freeze and regularise it."""

    name: str
    pretrained: bool = False
    weights: Path | None = None
    weights_map: dict[str, str] | None = None
    weights_strict: bool = Field(True, description="refuse a weights file unless every tensor fits and only "
                                                   "the classifier is left over; false: load what fits")
    freeze: int | Literal["all"] | FreezeConfig | None = None
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    drop_path: float | None = Field(None, ge=0.0, lt=1.0)
    options: dict[str, Any] = {}


class HeadConfig(BaseModel):
    """A registered head; every key besides ``name`` is passed to the head's constructor."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OptimizerConfig(_Strict):
    """timm's ``create_optimizer_v2``; the defaults are plain AdamW over every trainable parameter."""

    name: str = Field("adamw", description="a timm optimizer (adamw, sgd, lamb, ...)")
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(1e-8, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    filter_bias_and_bn: bool = Field(False, description="no weight decay on norms and biases (1-d parameters)")
    layer_decay: float | None = Field(None, gt=0, le=1, description="layer-wise lr decay: head lr, last "
                                                                     "stage lr*d, ..., stem lr*d**(stages+1)")
    fused: Union[Literal["auto"], bool] = Field("auto", description="torch's fused AdamW/Adam/SGD kernels "
                                                                    "(auto: on CUDA)")


class SchedulerConfig(_Strict):
    """timm's ``create_scheduler_v2`` (step, cosine; warmup), stepped per epoch; torch's onecycle per update."""

    name: Literal["none", "step", "cosine", "onecycle"] = "none"
    step_size: int = Field(30, ge=1)
    gamma: float = 0.1
    min_lr: float = 0.0
    max_lr: float | None = None
    pct_start: float = 0.3
    warmup_epochs: int = Field(0, ge=0, description="linear warmup from warmup_lr (inside the epochs)")
    warmup_lr: float = Field(1e-6, ge=0)


class EmaConfig(_Strict):
    enabled: bool = True
    beta: float = Field(0.999, gt=0, lt=1)
    update_after_step: int = Field(100, ge=0)
    update_every: int = Field(10, ge=1)


MONITORS = ("loss", "acc", "mae", "score_mae", "qwk", "off1", "mape", "f1", "amae", "max_mae", "rps", "nll", "ece")
"""What early stopping can monitor: the validation loss and each metric of :mod:`benchkit.evaluation.metrics`
(listed here because the schema sits below evaluation in the import layers; a test keeps the two in step)."""


class EarlyStoppingConfig(_Strict):
    monitor: str = "loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int | None = Field(50, ge=1)
    min_delta: float = 0.0

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, monitor: str) -> str:
        """A validation metric, checked here rather than after the first training epoch."""
        if monitor not in MONITORS:
            raise ValueError(f"{monitor!r} is not a validation metric; allowed: {', '.join(MONITORS)}")
        return monitor


class TrainConfig(_Strict):
    """The shared training recipe; a model entry may override any of it under ``train:``."""

    epochs: int = Field(500, ge=1, le=1_000_000)
    batch_size: int = Field(32, ge=2, le=MAX_BATCH, description="at least 2: BatchNorm cannot train on one image")
    eval_batch_size: int | None = Field(None, ge=1, le=MAX_BATCH,
                                        description="default: 2 x batch_size, at least 256 on CUDA")
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    amp: bool = True
    amp_dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    ema: EmaConfig = EmaConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    grad_clip: float | None = Field(None, gt=0)
    augmentation: Union[Literal["reference", "none"], list[dict[str, dict[str, Any]]]] = "reference"
    class_weights: Union[Literal["none", "balanced"], list[float]] = "none"
    device: str = "auto"
    num_workers: int = Field(0, ge=0, le=256)
    data_on_device: Union[Literal["auto"], bool] = Field(
        "auto", description="hold each split on the device (auto: on CUDA when it fits)")
    augment_chunk: Union[Literal["auto"], Annotated[int, Field(ge=1, le=MAX_BATCH)]] = Field(
        "auto", description="images augmented per kornia call (auto: 256 on CUDA, one batch on CPU)")
    channels_last: bool = False
    compile: Union[bool, Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = Field(
        False, description="torch.compile the model: true (= default) or a mode; reduce-overhead replays CUDA graphs")
    log_every: int = Field(20, ge=1)
    nan_policy: Literal["fail", "skip"] = "fail"
    max_train_batches: int | None = Field(None, ge=1, description="cap batches per epoch (smoke tests)")
    keep_resume_state: bool = Field(
        False, description="keep last.pt (optimizer, scheduler, EMA, RNG state) after the run ends well; by default "
                           "a finished run keeps only its best weights, predictions and records")
    weights_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="the parameters' type in best.safetensors; float16/bfloat16 halve it, and the run's "
                               "predictions and metrics come from the rounded weights")


class BootstrapConfig(_Strict):
    n_resamples: int = Field(10000, ge=0, le=1_000_000)
    seed: Seed = 27
    ci: float = Field(0.95, gt=0, lt=1)


class EnsembleConfig(_Strict):
    """A named ensemble: the runs of the listed configurations (model names, configuration labels or
    run ids), averaged per split strategy and fold."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    members: list[str] = Field(min_length=1)


class EvaluationConfig(_Strict):
    """How finished runs are scored and compared: splits, intervals, order, tests, views and ensembles."""

    splits: list[Literal["valid", "test"]] = Field(
        list(EVALUATED_SPLITS), min_length=1, description="splits evaluated and reported (valid: also where calibrated "
                                                     "decodings are fitted)")
    bootstrap: BootstrapConfig = BootstrapConfig()
    sort_by: str = "test_mae"
    reference: str | None = Field(None, description="run name the significance tests compare against")

    @field_validator("reference")
    @classmethod
    def _reference_in_todays_split_name(cls, value: str | None) -> str | None:
        renamed = strategy_of(value)
        if renamed != value:
            warnings.warn(f"evaluation.reference {value!r}: the split is now called group_kfold; write {renamed!r}",
                          DeprecationWarning, stacklevel=2)
        return renamed
    plots: bool = Field(True, description="write PNG plots per run and per experiment")
    tta: list[Union[str, dict[str, dict[str, Any]]]] | None = Field(
        None, description="test-time views averaged: identity, rot90, rot180, rot270, hflip, vflip, transpose, "
                          "or {KorniaTransform: {kwargs}}")
    ensembles: list[Union[Literal["seeds"], EnsembleConfig]] = Field(
        [], description="leaderboard rows averaging saved predictions: 'seeds' (each configuration's seeds) "
                        "or {name, members}")

    @field_validator("ensembles")
    @classmethod
    def _unique_names(cls, ensembles: list) -> list:
        """Each ensemble once: a name given twice would be one result written as two rows."""
        names = [item if isinstance(item, str) else item.name for item in ensembles]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"ensemble name(s) {twice} given more than once; names must be unique")
        return ensembles


class ModelConfig(_Strict):
    """One model of the comparison: a backbone, a head and optional recipe overrides."""

    name: str | None = None
    backbone: BackboneConfig
    head: HeadConfig
    train: dict[str, Any] = {}

    @field_validator("backbone", "head", mode="before")
    @classmethod
    def _name_shorthand(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @property
    def display_name(self) -> str:
        return self.name or f"{self.backbone.name}-{self.head.name}"


class ExperimentConfig(_Strict):
    """A whole experiment file."""

    name: str
    description: str = ""
    plugins: list[str] = []
    data: DataConfig
    models: list[ModelConfig] = Field(min_length=1)
    grid: dict[str, list[Any]] = {}
    seeds: list[Seed] = Field([0], min_length=1)
    max_runs: int = Field(1000, ge=1, description="runs an experiment may expand into before `benchkit run` "
                                                  "asks for --yes (Python: yes=True)")
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    tuning: TuningConfig | None = Field(None, description="the same trial budget per configuration, "
                                                          "tuned on the validation split")
    output_dir: Path | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
            raise ValueError("use letters, digits, '_', '-' and '.' only (it names the output folder)")
        return value


class BuildInputs(_Strict):
    """What building and training a run's model needs beyond its config, resolved before any run:
    the class names (from the data), the input size (``data.image_size`` or the backbone's own) and
    the loss's class weights (``train.class_weights`` as numbers, ``balanced`` from the train labels)."""

    classes: list[str] = Field(min_length=2)
    input_size: int = Field(ge=8)
    class_weights: list[float] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class RunSpec(_Strict):
    """Everything one run needs: what ``runs/<run_id>/config.yaml`` holds, fully resolved.

    ``build`` is filled from the data and the backbone before the run starts
    (:func:`benchkit.training.build_inputs.resolve_build`).
    """

    run_id: str
    experiment: str
    model_name: str
    seed: int
    grid: dict[str, Any] = {}
    split: str = "official"
    fold: int | None = None
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    evaluation: EvaluationConfig
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    plugins: list[str] = []
    base_dir: Path = Path(".")
    build: BuildInputs | None = None
    trial: TrialInfo | None = Field(None, description="set on a tuning trial: its study and number")
    tuned: TunedParams | None = Field(None, description="set on a run made with tuned parameters")

    @field_validator("split")
    @classmethod
    def _todays_split_name(cls, value: str) -> str:
        return strategy_of(value)


def dump_yaml(data: Any) -> str:
    """YAML text of plain data (paths as strings), keys in insertion order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
