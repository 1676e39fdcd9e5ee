"""The experiment file: a validated pydantic schema, dotted overrides and expansion into runs.

Unknown keys are errors that name the file, the key path and the closest valid key; wrong types
are errors that name the key path. Both raise :class:`~benchkit.errors.ConfigError` (exit 2).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchkit.config_files import deep_merge, read_config_file, resolve_bases
from benchkit.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SyntheticConfig(_Strict):
    """Sizes of the built-in synthetic dataset (``data.format: synthetic``)."""

    num_classes: int = Field(6, ge=2)
    train: int = Field(240, ge=1)
    valid: int = Field(60, ge=1)
    test: int = Field(60, ge=1)
    image_size: int = Field(64, ge=8)
    seed: int = 0


class DataConfig(_Strict):
    """Where the images are and how they are split."""

    format: Literal["roboflow_csv", "imagefolder", "synthetic"] = "roboflow_csv"
    root: Path | None = None
    classes: list[str] | None = None
    image_size: int | None = Field(None, ge=8, description="input size; default: the backbone's")
    synthetic: SyntheticConfig = SyntheticConfig()
    max_per_split: int | None = Field(None, ge=1, description="keep a seeded, stratified slice")
    split: Literal["official", "group_kfold", "group_holdout"] = "official"
    folds: int = Field(5, ge=2)
    fold: list[int] | None = None
    holdout_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    subject_regex: str = r"^(?P<subject>\d+)"
    subject_with_label: bool = True
    cache: bool = Field(True, description="decode images once into the disk cache (memory-mapped)")
    cache_dir: Path | None = Field(None, description="default: $BENCHKIT_CACHE_DIR or ~/.cache/benchkit")
    feature_cache: bool = Field(True, description="train heads of fully frozen, unaugmented runs on "
                                                  "backbone features computed once")

    @model_validator(mode="after")
    def _root_needed(self):
        if self.format != "synthetic" and self.root is None:
            raise ValueError(f"data.root is required for format {self.format!r}")
        return self


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

    model_config = ConfigDict(extra="allow")
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


class EarlyStoppingConfig(_Strict):
    monitor: str = "loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int | None = Field(50, ge=1)
    min_delta: float = 0.0


class TrainConfig(_Strict):
    """The shared training recipe; a model entry may override any of it under ``train:``."""

    epochs: int = Field(500, ge=1)
    batch_size: int = Field(32, ge=2, description="at least 2: BatchNorm cannot train on one image")
    eval_batch_size: int | None = Field(None, ge=1, description="default: 2 x batch_size, at least 256 on CUDA")
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
    num_workers: int = Field(0, ge=0)
    data_on_device: Union[Literal["auto"], bool] = Field(
        "auto", description="hold each split on the device (auto: on CUDA when it fits)")
    augment_chunk: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = Field(
        "auto", description="images augmented per kornia call (auto: 256 on CUDA, one batch on CPU)")
    channels_last: bool = False
    compile: Union[bool, Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = Field(
        False, description="torch.compile the model: true (= default) or a mode; reduce-overhead replays CUDA graphs")
    log_every: int = Field(20, ge=1)
    nan_policy: Literal["fail", "skip"] = "fail"
    max_train_batches: int | None = Field(None, ge=1, description="cap batches per epoch (smoke tests)")


class BootstrapConfig(_Strict):
    n_resamples: int = Field(10000, ge=0)
    seed: int = 27
    ci: float = Field(0.95, gt=0, lt=1)


class EnsembleConfig(_Strict):
    """A named ensemble: the runs of the listed configurations (model names, configuration labels or
    run ids), averaged per split strategy and fold."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    members: list[str] = Field(min_length=1)


class EvaluationConfig(_Strict):
    splits: list[str] = ["valid", "test"]
    bootstrap: BootstrapConfig = BootstrapConfig()
    sort_by: str = "test_mae"
    reference: str | None = Field(None, description="run name the significance tests compare against")
    plots: bool = Field(True, description="write PNG plots per run and per experiment")
    tta: list[Union[str, dict[str, dict[str, Any]]]] | None = Field(
        None, description="test-time views averaged: identity, rot90, rot180, rot270, hflip, vflip, transpose, "
                          "or {KorniaTransform: {kwargs}}")
    ensembles: list[Union[Literal["seeds"], EnsembleConfig]] = Field(
        [], description="leaderboard rows averaging saved predictions: 'seeds' (each configuration's seeds) "
                        "or {name, members}")


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


class ExperimentConfig(_Strict):
    """A whole experiment file."""

    name: str
    description: str = ""
    plugins: list[str] = []
    data: DataConfig
    models: list[ModelConfig] = Field(min_length=1)
    grid: dict[str, list[Any]] = {}
    seeds: list[int] = Field([0], min_length=1)
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
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
    (:func:`benchkit.models.grader.resolve_build`).
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


# ---------------------------------------------------------------- loading

def load_experiment(source: str | Path | Mapping, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment file, or take a mapping built in code (``base:`` files relative to the current
    folder); merge its bases, override (``a.b=c``), check for unknown keys and validate."""
    if isinstance(source, Mapping):
        raw, name = resolve_bases(source, Path.cwd()), "<experiment>"
    else:
        raw, name = read_config_file(source), str(source)
    for item in overrides:
        apply_override(raw, item)
    return validate_experiment(raw, source=name)


def validate_experiment(raw: dict, source: str = "<experiment>") -> ExperimentConfig:
    """Validate a raw mapping, reporting unknown keys with the closest valid spelling."""
    problems = list(_unknown_keys(raw, ExperimentConfig, ()))
    for i, model in enumerate(raw.get("models") or []):
        if isinstance(model, dict) and isinstance(model.get("train"), dict):
            problems += _unknown_keys(model["train"], TrainConfig, ("models", i, "train"))
    if isinstance(raw.get("grid"), dict):
        problems += _grid_problems(raw["grid"])
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    try:
        config = ExperimentConfig.model_validate(raw)
        for model in config.models:
            TrainConfig.model_validate(deep_merge(config.train.model_dump(), model.train))
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + _format_validation_error(exc)) from None
    return config


class _GridPaths(_Strict):
    """What a grid key may point into: a model entry's keys, its ``train`` recipe, or ``data``."""

    name: str | None = None
    backbone: BackboneConfig
    head: HeadConfig
    train: TrainConfig
    data: DataConfig


def _grid_problems(grid: dict) -> list[str]:
    """Empty value lists and misspelled grid keys, worded as for the same key under ``models:``."""
    problems = []
    for key, values in grid.items():
        if isinstance(values, list) and not values:
            problems.append(f"grid key {key!r} has an empty list of values (give at least one value, "
                            f"or remove the key)")
        for value in values if isinstance(values, list) and values else [None]:
            nested: Any = value
            for part in reversed(str(key).split(".")):
                nested = {part: nested}
            problems += [f"grid key {key!r}: {p}" for p in _unknown_keys(nested, _GridPaths, ("grid",))
                         if f"grid key {key!r}: {p}" not in problems]
    return problems


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``dotted.key=value`` override; the value is parsed as YAML; ``*`` spans a list.

    Under ``grid`` the rest of the key is one grid key: ``grid.backbone.dropout=[0, 0.5]``.
    """
    key, sep, value_text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
    parts = key.split(".")
    if parts[0] == "grid" and len(parts) > 1:
        parts = ["grid", ".".join(parts[1:])]
    _set_path(raw, parts, value, key)


def _set_path(node: Any, parts: list[str], value: Any, full_key: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets = range(len(node)) if head == "*" else [_list_index(node, head, full_key)]
        for i in targets:
            if rest:
                _set_path(node[i], rest, value, full_key)
            else:
                node[i] = copy.deepcopy(value)
        return
    if not isinstance(node, dict):
        raise ConfigError(f"--set {full_key}: {head!r} is inside a value that is not a mapping")
    if not rest:
        node[head] = value
        return
    if node.get(head) is None:
        node[head] = {}
    elif isinstance(node[head], str) and head in ("backbone", "head"):
        node[head] = {"name": node[head]}
    _set_path(node[head], rest, value, full_key)


def _list_index(node: list, text: str, full_key: str) -> int:
    if not text.isdigit() or int(text) >= len(node):
        raise ConfigError(f"--set {full_key}: {text!r} is not an index of a list of {len(node)} item(s)")
    return int(text)


def _unknown_keys(raw: Any, model_cls: type[BaseModel], loc: tuple) -> list[str]:
    """Unknown keys in ``raw`` against ``model_cls`` and its nested models."""
    if not isinstance(raw, dict) or model_cls.model_config.get("extra") != "forbid":
        return []
    problems = []
    fields = model_cls.model_fields
    for key, value in raw.items():
        where = ".".join(str(p) for p in (*loc, key))
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(fields)})"
            problems.append(f"unknown key {where!r}{hint}")
            continue
        for nested, is_list in _nested_models(fields[key].annotation):
            if is_list and isinstance(value, list):
                for i, item in enumerate(value):
                    problems += _unknown_keys(item, nested, (*loc, key, i))
            elif not is_list:
                problems += _unknown_keys(value, nested, (*loc, key))
    return problems


def _nested_models(annotation) -> list[tuple[type[BaseModel], bool]]:
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    if origin is list:
        return [(m, True) for m, _ in _nested_models(typing.get_args(annotation)[0])]
    if origin in (Union, types.UnionType):
        return [found for arg in typing.get_args(annotation) for found in _nested_models(arg)]
    return []


def _format_validation_error(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[")))
        got = err.get("input")
        got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        messages.append(f"key {loc or '<top>'!r}: {err['msg']}{got_text}")
    unique = list(dict.fromkeys(messages))
    return "; ".join(unique[:5]) + (f"; ... {len(unique) - 5} more" if len(unique) > 5 else "")


# ---------------------------------------------------------------- expansion

def grid_column(key: str) -> str:
    """Leaderboard column of a grid key: its last part (``head.name`` -> ``head``)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def expand_runs(config: ExperimentConfig, base_dir: Path = Path(".")) -> list[RunSpec]:
    """Every (model x grid cell x fold x seed) combination as a resolved :class:`RunSpec`.

    Grid keys are paths inside a model entry (``backbone.freeze``, ``head.name``, ``train.epochs``)
    or inside the data section (``data.split``), so official and subject-disjoint splits can sit in
    one leaderboard.
    """
    grid_keys = list(config.grid)
    empty = [key for key in grid_keys if not config.grid[key]]
    if empty:
        raise ConfigError(f"grid key(s) {empty} have an empty list of values (give at least one value, "
                          f"or remove the key)")
    cells = list(itertools.product(*(config.grid[k] for k in grid_keys)))
    runs, seen = [], set()
    for model in config.models:
        for cell in cells:
            values = dict(zip(grid_keys, cell))
            resolved, train, data = _resolve_cell(config, model, values)
            name = model.name or resolved.display_name
            id_values = {k: v for k, v in values.items()
                         if model.name or k not in ("backbone.name", "head.name")}
            for split_label, fold in _folds(data):
                for seed in config.seeds:
                    run_id = _run_id(name, id_values, split_label, fold, seed)
                    if run_id in seen:
                        raise ConfigError(f"two runs would share the id {run_id!r}: give the models "
                                          f"distinct 'name's")
                    seen.add(run_id)
                    runs.append(RunSpec(
                        run_id=run_id, experiment=config.name, model_name=name,
                        seed=seed, grid={grid_column(k): v for k, v in values.items() if k != "data.split"},
                        split=split_label, fold=fold, data=data, model=resolved, train=train,
                        evaluation=config.evaluation, resources=config.resources,
                        tracking=config.tracking, plugins=config.plugins, base_dir=base_dir))
    return runs


def _resolve_cell(config: ExperimentConfig, model: ModelConfig, values: dict):
    """The model, recipe and data config of one grid cell, validated."""
    model_raw = model.model_dump(mode="json")
    model_raw["head"] = {"name": model.head.name, **model.head.options}
    data_raw = config.data.model_dump(mode="json")
    for key, value in values.items():
        if key.startswith("data."):
            _set_grid_value(data_raw, key[len("data."):], value)
        else:
            _set_grid_value(model_raw, key, value)
    try:
        resolved = ModelConfig.model_validate(model_raw)
        train = TrainConfig.model_validate(deep_merge(config.train.model_dump(), resolved.train))
        data = DataConfig.model_validate(data_raw)
    except ValidationError as exc:
        raise ConfigError(f"grid cell {values}: " + _format_validation_error(exc)) from None
    return resolved, train, data


def _folds(data: DataConfig) -> list[tuple[str, int | None]]:
    if data.split == "group_kfold":
        chosen = data.fold if data.fold is not None else list(range(data.folds))
        bad = [f for f in chosen if not 0 <= f < data.folds]
        if bad:
            raise ConfigError(f"data.fold: {bad} outside 0..{data.folds - 1}")
        return [(f"group{data.folds}fold", f) for f in chosen]
    return [(data.split, None)]


def _set_grid_value(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] not in raw:
        raise ConfigError(f"grid key {key!r}: must be a path inside a model entry (starting with one of "
                          f"{list(ModelConfig.model_fields)}, e.g. backbone.freeze or head.name) "
                          f"or inside data (data.split)")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _run_id(model_name: str, values: dict, split_label: str, fold: int | None, seed: int) -> str:
    pieces = [model_name] + [f"{grid_column(k)}={_short(v)}" for k, v in values.items()]
    if fold is not None:
        pieces.append(f"fold{fold}")
    elif split_label != "official":
        pieces.append(split_label)
    pieces.append(f"s{seed}")
    return re.sub(r"[^A-Za-z0-9_.=+\-]", "_", "__".join(pieces))


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(f"{k}{_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "-".join(_short(v) for v in value)
    return str(value)


def dump_yaml(data: Any) -> str:
    """YAML text of plain data (paths as strings), keys in insertion order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
