"""Scaling: engine time per training epoch against the number of train images, from the disk cache.

The train split is decoded into the cache once (its cost is reported, not repeated); each subset
(e.g. 300, 600, 1294 images at 224) is then read from the memory-mapped cache and trained for three
epochs with a small CNN (no augmentation, 32 validation images). The fit of epoch time against the
image count gives the slope (seconds per image) and how straight the line is (R^2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.config import TrainConfig
from benchkit.data.datasets import Split
from benchkit.data.image_cache import ImageCache
from benchkit.training.engine import Engine
from benchkit.data.decode import ImageArrayDataset
from benchkit.models.grader import GraderModel, create_head
from benchkit.training.transforms import BatchPreprocessor

from _bench import Figure

CLASSES = 6
EPOCHS = 3


def small_cnn() -> Backbone:
    """Three strided convolutions and a pooled 64-d feature: cheap enough for whole epochs on a CPU."""
    layers, width = [], 3
    for out in (16, 32, 64):
        layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        width = out
    body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(body, 64)


def _epoch_seconds(rows, labels, valid, seed: int = 0) -> float:
    torch.manual_seed(seed)
    backbone = small_cnn()
    model = GraderModel(backbone, create_head("regression", backbone.num_features, CLASSES, {}))
    config = TrainConfig(epochs=EPOCHS, batch_size=32, augmentation="none", ema={"enabled": False},
                         early_stopping={"patience": None})
    engine = Engine(model, BatchPreprocessor([], backbone.mean, backbone.std), config, CLASSES)
    result = engine.fit(ImageArrayDataset(rows, labels), valid, seed)
    seconds = np.diff([0.0] + [row["seconds"] for row in result.history])
    return float(seconds.min())


def scaling(train: Split, valid: Split, cache: ImageCache, counts: list[int], build_seconds: float) -> Figure:
    valid_small = valid.subset(range(min(32, len(valid))))
    valid_set = ImageArrayDataset(cache.split_array(valid_small, progress=False), valid_small.labels)
    counts = [min(c, len(train)) for c in counts]
    before = cache.decoded
    times = []
    for n in counts:
        sub = train.subset(range(n))
        times.append(_epoch_seconds(cache.split_array(sub, progress=False), sub.labels, valid_set))
    slope, intercept = np.polyfit(counts, times, 1)
    predicted = slope * np.asarray(counts) + intercept
    ss_res = float(np.sum((np.asarray(times) - predicted) ** 2))
    ss_tot = float(np.sum((np.asarray(times) - np.mean(times)) ** 2))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return Figure("scaling_epoch_seconds_per_image_slope", float(slope),
                  "linear in the image count (R^2 >= 0.99), cache built once", r2 >= 0.99
                  and cache.decoded == before, " s/image",
                  {"images": counts, "epoch_seconds": times, "intercept_seconds": float(intercept),
                   "r2": r2, "decoded_during_epochs": cache.decoded - before,
                   "cache_build_seconds_once": build_seconds, "epochs_each": EPOCHS,
                   "model": "3-conv CNN (16/32/64), regression head, 224px, no augmentation"},
                  note="epoch seconds " + ", ".join(f"{n}: {t:.2f}" for n, t in zip(counts, times))
                       + f"; R^2 {r2:.4f}; cache build {build_seconds:.1f} s once")
