"""Shared fixtures: the real dataset (skipped where absent), the tiny test backbone, small experiments."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY_PLUGIN = REPO / "tests" / "plugins" / "tiny_backbone.py"
HAIR_LOSS = Path(os.environ.get("BENCHKIT_HAIR_LOSS", REPO.parent / "shared" / "data" / "hair-loss"))

torch.set_num_threads(min(2, os.cpu_count() or 1))
# every Ray a test starts keeps its nodes on 127.0.0.1 (Ray reads this when it is imported, and so do the
# processes it starts); benchkit's own local Ray does so without it (benchkit.execution.ray_executor.on_loopback)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


@pytest.fixture(scope="session")
def hair_loss_root() -> Path:
    """The real hair-loss export beside the checkout; tests that need it skip where it is absent."""
    if not (HAIR_LOSS / "train" / "_classes.csv").is_file():
        pytest.skip(f"real dataset not found at {HAIR_LOSS} (set BENCHKIT_HAIR_LOSS to point at it)")
    return HAIR_LOSS


@pytest.fixture(scope="session", autouse=True)
def tiny_backbone():
    """Register the test plugin backbone ``tiny_cnn`` once for the session."""
    from benchkit.registry import import_plugins
    import_plugins([str(TINY_PLUGIN)])


def small_experiment(tmp_path: Path, **changes) -> Path:
    """Write a small synthetic experiment (tiny_cnn + regression, 2 epochs) and return its path.

    ``changes`` are top-level keys replacing the defaults (e.g. ``models=[...]``, ``seeds=[1, 2]``).
    """
    raw = {
        "name": "small",
        "plugins": [str(TINY_PLUGIN)],
        "data": {"format": "synthetic", "image_size": 32,
                 "synthetic": {"num_classes": 4, "train": 48, "valid": 24, "test": 24, "image_size": 32}},
        "models": [{"backbone": "tiny_cnn", "head": {"name": "regression"}}],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 3e-3}, "augmentation": "none",
                  "ema": {"enabled": False}, "early_stopping": {"patience": 5}},
        "evaluation": {"bootstrap": {"n_resamples": 200, "seed": 0}, "plots": False},
    }
    raw.update(changes)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
IMAGEFOLDER_CLASSES = ["low", "mid", "high"]


def write_imagefolder(root: Path, per_class: int = 3, seed: int = 0) -> None:
    """A small imagefolder with odd sizes and modes (RGB, grayscale, RGBA, palette)."""
    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "RGBA", "P"]
    for split in ("train", "valid"):
        for level, name in enumerate(IMAGEFOLDER_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = int(rng.integers(20, 50)), int(rng.integers(20, 50))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                image = Image.fromarray(pixels, "RGB")
                mode = modes[(level + i) % len(modes)]
                image = image.convert(mode) if mode != "P" else image.quantize(16)
                image.save(folder / f"{split}{level}{i}.png")
