"""An exported folder (``model.safetensors`` + ``config.json``, see :mod:`benchkit.inference.export`): its format
and how to read it back as a run config and a checkpoint, so :func:`benchkit.load_run` accepts it."""

from __future__ import annotations

from pathlib import Path

import torch

from benchkit.errors import ConfigError
from benchkit.io import read_json

EXPORT_FORMAT = "benchkit-export/1"
HEAD_PREFIX = "benchkit_head."
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def is_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds an exported run (``config.json`` of this format beside ``model.safetensors``)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        return read_json(folder / CONFIG_FILE).get("format") == EXPORT_FORMAT
    except (ValueError, AttributeError):
        return False


def grader_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Exported tensors back under the grader model's own keys (``backbone.body.``, ``head.``)."""
    return {("head." + name[len(HEAD_PREFIX):]) if name.startswith(HEAD_PREFIX) else "backbone.body." + name: t
            for name, t in tensors.items()}


def read_export(folder: str | Path) -> tuple[dict, dict]:
    """An exported folder as what :func:`benchkit.load_run` reads from a run folder: the run config (raw)
    and a checkpoint (``model`` state dict under the grader's keys, ``classes``, ``input_size``, ``mean``, ``std``)."""
    from safetensors.torch import load_file
    config = read_export_config(folder)
    tensors = load_file(str(Path(folder) / WEIGHTS_FILE))
    checkpoint = {"model": grader_state_dict(tensors), "classes": config["classes"],
                  "input_size": config["input_size"], "mean": config["mean"], "std": config["std"]}
    return config["benchkit"]["run"], checkpoint


def read_export_config(folder: str | Path) -> dict:
    """``config.json`` of an exported folder (a ConfigError if it is not one)."""
    if not is_export(folder):
        raise ConfigError(f"{folder}: not an exported run ({CONFIG_FILE} of format {EXPORT_FORMAT} "
                          f"beside {WEIGHTS_FILE})")
    return read_json(Path(folder) / CONFIG_FILE)


def export_target_problem(folder: str | Path) -> str | None:
    """Why exporting into ``folder`` would overwrite something of the user's: it is a file, or a folder that is
    neither empty nor an earlier export (None when it is missing, empty or an earlier export)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if is_export(folder) or not any(folder.iterdir()):
        return None
    mine = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if (folder / name).exists()]
    held = f"its own {' and '.join(mine)}" if mine else "other files"
    return (f"{folder} is not empty and not an earlier export (it holds {held}); export into a new or empty "
            f"folder, or pass --force to write {CONFIG_FILE} and {WEIGHTS_FILE} there anyway")
