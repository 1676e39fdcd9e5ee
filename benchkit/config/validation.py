"""Reading an experiment: its file (with ``base:`` files), dotted overrides and strict validation.

Unknown keys are errors that name the file, the key path and the closest valid key; wrong types
are errors that name the key path. Both raise :class:`~benchkit.errors.ConfigError` (exit 2).
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml
from pydantic import BaseModel, ValidationError

from benchkit.config.schema import (BackboneConfig, DataConfig, ExperimentConfig, HeadConfig, TrainConfig, _Strict)
from benchkit.config.files import deep_merge, read_config_file, resolve_bases
from benchkit.config.value_limits import check_values
from benchkit.errors import ConfigError


def load_experiment(source: str | Path | Mapping, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment file, or take a mapping built in code (``base:`` files relative to the current
    folder); merge its bases, override (``a.b=c``), check for unknown keys and validate."""
    overrides = override_list(overrides)
    if not isinstance(source, (str, Path, Mapping)):
        raise ConfigError(f"experiment: expected a YAML file (a str or Path) or a mapping of its keys, "
                          f"got {type(source).__name__} {source!r}")
    if isinstance(source, Mapping):
        check_values(source, "<experiment>")
        raw, name = resolve_bases(source, Path.cwd()), "<experiment>"
    else:
        raw, name = read_config_file(source), str(source)
    for item in overrides:
        apply_override(raw, item)
    return validate_experiment(raw, source=name)


def load_data_section(source: str | Path, overrides: Sequence[str] = ()) -> tuple[DataConfig, list[str]]:
    """The ``data`` section and ``plugins`` of a file that names no models (a dataset description, a recipe),
    read as :func:`load_experiment` reads an experiment: bases merged, overrides applied, unknown keys refused."""
    raw = read_config_file(source)
    for item in override_list(overrides):
        apply_override(raw, item)
    return validate_data_section(raw, str(source))


class _DataFile(_Strict):
    data: DataConfig
    plugins: list[str] = []


def validate_data_section(raw: dict, source: str = "<data>") -> tuple[DataConfig, list[str]]:
    """The validated ``data`` section and ``plugins`` of a raw mapping; its other keys only checked for typos."""
    check_values(raw, source)
    problems = list(_unknown_keys(raw, ExperimentConfig, ()))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    if not isinstance(raw.get("data"), dict):
        raise ConfigError(f"{source}: no 'data:' mapping (expected data.root, data.format, data.classes)")
    try:
        found = _DataFile.model_validate({"data": raw["data"], "plugins": raw.get("plugins") or []})
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + format_validation_error(exc)) from None
    return found.data, found.plugins


def validate_experiment(raw: dict, source: str = "<experiment>") -> ExperimentConfig:
    """Validate a raw mapping, reporting unknown keys with the closest valid spelling."""
    check_values(raw, source)
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
        raise ConfigError(f"{source}: " + format_validation_error(exc)) from None
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


def override_list(overrides: str | Sequence[str] | None) -> list[str]:
    """Overrides as a list: one ``KEY=VALUE`` string is one override (not a sequence of characters)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"overrides: expected KEY=VALUE strings such as ['train.epochs=2'], got {overrides!r}")
    return list(overrides)


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


def format_validation_error(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[")))
        got = err.get("input")
        got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        messages.append(f"key {loc or '<top>'!r}: {err['msg']}{got_text}")
    unique = list(dict.fromkeys(messages))
    return "; ".join(unique[:5]) + (f"; ... {len(unique) - 5} more" if len(unique) > 5 else "")
