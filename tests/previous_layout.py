"""A run folder as the previous version wrote it: ``best.pt`` (weights and a copy of the run's facts), ``run.json``
repeating ``config.yaml``, and ``last.pt`` kept after the run finished. Built from a folder this version wrote
(with ``train.keep_resume_state: true`` where ``last.pt`` must be there), the way that version saved it."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from benchkit.io import read_json, write_json


NEW_TRAIN_KEYS = ("keep_resume_state", "weights_dtype")
"""Keys the previous version's config.yaml lacked."""


def write_previous_layout(run_dir: Path) -> None:
    """Rewrite ``run_dir`` in place: ``best.safetensors`` becomes the old ``best.pt``, ``run.json`` the old one."""
    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in NEW_TRAIN_KEYS:
        config["train"].pop(key)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    info = read_json(run_dir / "run.json")
    facts = {"classes": config["build"]["classes"], "input_size": config["build"]["input_size"],
             "mean": info["mean"], "std": info["std"]}
    weights = load_file(str(run_dir / "best.safetensors"))
    torch.save({"model": weights, "run_id": config["run_id"], **facts, "epoch": info["best_epoch"],
                "config": config}, run_dir / "best.pt")
    (run_dir / "best.safetensors").unlink()
    write_json(run_dir / "run.json", {**facts, "best_epoch": info["best_epoch"],
                                      "monitor": config["train"]["early_stopping"]["monitor"]})
