"""Export a finished run for use outside benchkit: ``model.safetensors`` and ``config.json``.

``model.safetensors`` holds the backbone under its library's own key names (a timm model created with
``num_classes=0``, a torchvision model whose last classifier Linear is an Identity), so the library
loads it directly, e.g. ``timm.create_model(name, pretrained=True, num_classes=0,
pretrained_cfg_overlay=dict(file="model.safetensors"))``, and the head under the prefix
``benchkit_head.`` (timm's own ``head.`` keys never collide with it). ``config.json`` says what a
user needs to rebuild the grader anywhere: the architecture and how to create it, the input size
and resize, mean and std, the classes, the head with its decoding and fitted thresholds, and the
benchkit run config, so ``benchkit.load_run`` accepts the exported folder too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from benchkit.io import atomic_path, write_json
from benchkit.results import run_folder
from benchkit.errors import ConfigError
from benchkit.results.exported import CONFIG_FILE, EXPORT_FORMAT, HEAD_PREFIX, WEIGHTS_FILE, export_target_problem



def export_run(run_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json`` for a finished run; return ``out_dir``.

    ``out_dir`` must be missing, empty or an earlier export (a ConfigError otherwise, unless ``force``), so a
    user's own ``config.json`` is never overwritten without a word.
    """
    from benchkit._version import __version__
    from benchkit.inference.predict import load_run
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    problem = export_target_problem(out_dir)
    if problem and not (force and out_dir.is_dir()):
        raise ConfigError(f"--out {problem}")
    run = load_run(run_dir, device="cpu")
    model = run.model
    tensors = {name: _owned(t) for name, t in model.backbone.body.state_dict().items()}
    tensors.update({HEAD_PREFIX + name: _owned(t) for name, t in model.head.state_dict().items()})
    head = model.head
    details = run_folder.read_details(run_dir)
    config = {
        "format": EXPORT_FORMAT,
        "benchkit_version": __version__,
        "run_id": run.spec.run_id,
        "architecture": architecture(model.backbone.body, run.spec.model.backbone.name, run.input_size),
        "num_features": model.backbone.num_features,
        "input_size": run.input_size,
        "resize": "the whole image to input_size x input_size, bilinear with antialiasing (PIL), RGB uint8",
        "mean": list(model.backbone.mean),
        "std": list(model.backbone.std),
        "normalize": "x = (pixel / 255 - mean) / std, channels first",
        "classes": list(run.classes),
        "head": {"name": run.spec.model.head.name, "options": run.spec.model.head.options,
                 "prefix": HEAD_PREFIX, "decoding": getattr(head, "decode", None),
                 "decodings": list(getattr(head, "decodings", ())),
                 "has_probabilities": bool(getattr(head, "has_probabilities", False)),
                 "levels": "0-based: level k is classes[k]"},
        "thresholds": details.get("calibration"),
        "tta": run.spec.evaluation.model_dump(mode="json").get("tta"),
        "benchkit": {"run": json.loads(run.spec.model_dump_json())},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": EXPORT_FORMAT, "run_id": run.spec.run_id})
    write_json(out_dir / CONFIG_FILE, config)
    return out_dir


def architecture(body: nn.Module, backbone_name: str, input_size: int) -> dict[str, Any]:
    """Which library builds ``body`` and how: ``{"library", "name", "kwargs"}`` (plus a note for torchvision)."""
    module = type(body).__module__
    cfg = getattr(body, "pretrained_cfg", None)
    if module.startswith("timm.") and isinstance(cfg, dict):
        kwargs: dict[str, Any] = {"num_classes": 0}
        embed_size = getattr(getattr(body, "patch_embed", None), "img_size", None)
        if embed_size is not None and tuple(embed_size) != tuple(cfg.get("input_size", (3, 0, 0))[1:]):
            kwargs["img_size"] = int(embed_size[0])
        return {"library": "timm", "name": cfg["architecture"], "kwargs": kwargs}
    if module.startswith("torchvision."):
        return {"library": "torchvision", "name": backbone_name.split(":", 1)[-1], "kwargs": {},
                "note": "the classifier's last Linear is not exported: set it to torch.nn.Identity() before "
                        "load_state_dict, or load with strict=False; the model was built for input_size "
                        f"{input_size}"}
    return {"library": "benchkit", "name": backbone_name, "kwargs": {},
            "note": "a benchkit plugin backbone: rebuild it with benchkit.load_run(this folder)"}


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy on the CPU (safetensors refuses tensors that share memory)."""
    return tensor.detach().to("cpu").clone().contiguous()
