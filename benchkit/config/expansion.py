"""An experiment expanded into runs: every model x grid cell x fold x seed as a resolved RunSpec."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchkit.config.schema import DataConfig, ExperimentConfig, ModelConfig, RunSpec, TrainConfig
from benchkit.config.files import deep_merge
from benchkit.config.validation import format_validation_error
from benchkit.errors import ConfigError
from benchkit.registry import DATASET_FORMATS


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
            check_format(data)
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
        raise ConfigError(f"grid cell {values}: " + format_validation_error(exc)) from None
    return resolved, train, data


def check_format(data: DataConfig) -> None:
    """``data.format`` is a registered dataset format (plugins imported); a ConfigError listing the known ones."""
    try:
        DATASET_FORMATS.get(data.format)
    except ConfigError as exc:
        raise ConfigError(f"data.format: {exc}") from None


def _folds(data: DataConfig) -> list[tuple[str, int | None]]:
    if data.split == "group_kfold":
        chosen = data.fold if data.fold is not None else list(range(data.folds))
        bad = [f for f in chosen if not 0 <= f < data.folds]
        if bad:
            raise ConfigError(f"data.fold: {bad} outside 0..{data.folds - 1}")
        return [("group_kfold", f) for f in chosen]
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
