"""Reading experiment files: ``base:`` files they extend, deep-merged, before validation.

An experiment file may name ``base: recipe.yaml`` (or a list of them). Each base is read (with its
own bases first), the bases are merged in order and the file itself is merged last: mappings merge
key by key at every depth, anything else (lists such as ``models`` or ``seeds``, scalars) replaces
what came before. Paths are relative to the file that writes them: ``base:`` entries, and the
relative paths a base sets (``data.root``, ``data.cache_dir``, plugin files,
``models[*].backbone.weights``), which are rewritten relative to the extending file, so a recipe in
``experiments/recipes/`` says ``root: ../../data/hair-loss``. A missing base, or bases that
extend each other in a cycle, is a :class:`~benchkit.errors.ConfigError` naming the files (exit 2).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from benchkit.config.value_limits import check_values
from benchkit.errors import ConfigError

BASE_KEY = "base"


def read_config_file(path: str | Path) -> dict:
    """The raw mapping of ``path`` with its bases merged in (not yet validated)."""
    return _read(Path(path), ())


def resolve_bases(raw: Mapping, folder: str | Path) -> dict:
    """A mapping built in code (not read from a file) with its ``base:`` files, relative to ``folder``, merged in."""
    return _merge_bases(copy.deepcopy(dict(raw)), Path(folder) / "<experiment>", ())


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``: mappings merge recursively, other values replace; inputs are not changed."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read(path: Path, chain: tuple[Path, ...]) -> dict:
    return _merge_bases(_load_mapping(path, chain), path, chain)


def _merge_bases(raw: dict, path: Path, chain: tuple[Path, ...]) -> dict:
    bases = raw.pop(BASE_KEY, None)
    if bases is None:
        return raw
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: key 'base' must be a file name or a list of file names (got {bases!r})")
    merged: dict = {}
    for name in bases:
        base_path = path.parent / name
        if not base_path.is_file():
            raise ConfigError(f"{path}: base file not found: {name} (looked for {base_path})"
                              if not base_path.is_dir() else f"{path}: base {name} is a folder")
        base_raw = _read(base_path, (*chain, path))
        merged = deep_merge(merged, _rebase_paths(base_raw, base_path.parent, path.parent))
    return deep_merge(merged, raw)


def _load_mapping(path: Path, chain: tuple[Path, ...]) -> dict:
    if not path.is_file():
        raise ConfigError(f"experiment file {path} is a folder" if path.is_dir()
                          else f"experiment file not found: {path}")
    resolved = path.resolve()
    if resolved in {p.resolve() for p in chain}:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"base files extend each other in a cycle: {cycle}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    check_values(raw, str(path))
    if not isinstance(raw, dict):
        what = "base file" if chain else "experiment file"
        raise ConfigError(f"{path}: the top level of an {what} must be a mapping of keys (name, data, models, ...)")
    return raw


def _rebase_paths(raw: dict, source_dir: Path, target_dir: Path) -> dict:
    """``raw`` (read in ``source_dir``) with its relative paths rewritten relative to ``target_dir``."""
    if source_dir.resolve() == target_dir.resolve():
        return raw
    raw = copy.deepcopy(raw)

    def move(value: Any) -> Any:
        if not isinstance(value, str) or not value or Path(value).is_absolute() or value.startswith("~"):
            return value
        moved = os.path.relpath(os.path.normpath(os.path.join(source_dir.absolute(), value)),
                                target_dir.absolute())
        return Path(moved).as_posix()

    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("root", "cache_dir"):
            if key in data:
                data[key] = move(data[key])
    if isinstance(raw.get("plugins"), list):
        raw["plugins"] = [move(p) if isinstance(p, str) and (p.endswith(".py") or "/" in p) else p
                          for p in raw["plugins"]]
    for model in raw.get("models") or []:
        backbone = model.get("backbone") if isinstance(model, dict) else None
        if isinstance(backbone, dict) and "weights" in backbone:
            backbone["weights"] = move(backbone["weights"])
    return raw


def experiment_schema() -> dict:
    """JSON schema (draft 2020-12) of an experiment file, for editors: the validated model plus ``base``.

    A file with ``base:`` may leave the required keys to its bases.
    """
    from benchkit.config.schema import ExperimentConfig
    schema = ExperimentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "benchkit experiment"
    file_or_list = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    schema["properties"] = {BASE_KEY: {**file_or_list, "description": "experiment or recipe file(s) this one "
                                       "extends, relative to this file; deep-merged, this file last"},
                            **schema["properties"]}
    model = schema["$defs"]["ModelConfig"]["properties"]
    for key in ("backbone", "head"):  # the name shorthand ``backbone: resnet18``
        model[key] = {"anyOf": [{"type": "string", "description": f"a registered {key} name"}, model[key]]}
    _dataset_formats(schema)
    required = schema.pop("required", [])
    schema["anyOf"] = [{"required": [BASE_KEY]}, {"required": required}]
    return schema


def _dataset_formats(schema: dict) -> None:
    """``data.format``: the registered dataset formats; ``data.options``: the chosen format's own options."""
    from benchkit.registry import DATASET_FORMATS
    data = schema["$defs"]["DataConfig"]
    names = DATASET_FORMATS.names()
    data["properties"]["format"]["enum"] = names
    rules = []
    for name in names:
        options = getattr(DATASET_FORMATS.get(name), "Options", None)
        shape = options.model_json_schema() if options is not None else {"type": "object", "maxProperties": 0}
        schema["$defs"].update(shape.pop("$defs", {}))
        rules.append({"if": {"properties": {"format": {"const": name}}, "required": ["format"]},
                      "then": {"properties": {"options": shape}}})
    data["allOf"] = rules
