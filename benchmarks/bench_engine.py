"""Engine overhead: training-step throughput of ``benchkit.training.engine.Engine`` over a minimal PyTorch loop.

Same model (resnet18 + regression head, random init), batch, precision (the engine's autocast
choice for the device) and in-memory uint8 images; EMA, scheduler and augmentation are off on both
sides, so what remains is the engine's own per-step work: its DataLoader (per-image reads and
collation), preprocessing module, loss bookkeeping and callbacks. Throughput is timed from the end
of the first step to the end of the last (the engine reports each step through ``on_step``), so
one-off setup and the epoch's validation are left out on both sides. Sides alternate; the figure
is the median of the paired ratios.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

import benchkit.backbones  # noqa: F401
from benchkit.config import ModelConfig, TrainConfig
from benchkit.training.engine import Engine
from benchkit.training.runtime import Runtime
from benchkit.data.decode import ImageArrayDataset
from benchkit.models.grader import build_model
from benchkit.training.transforms import BatchPreprocessor

from _bench import Figure

CLASSES = 6


def _config(batch: int, steps: int) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=batch, augmentation="none", ema={"enabled": False},
                       max_train_batches=steps, log_every=1)


def _steps_per_second(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _hand_loop(model, batches, runtime, mean, std) -> list[float]:
    """The minimal loop: normalise, forward, loss, backward, AdamW step; the time after each step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=1e-8)
    device = runtime.device
    scaler = torch.amp.GradScaler(device.type, enabled=runtime.amp_dtype == torch.float16)
    model.train()
    stamps = []
    for images, targets in batches:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        x = (images.float() / 255.0 - mean) / std
        with runtime.autocast():
            out = model(x)
        loss = model.head.loss(out.float(), targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return stamps


def _engine_epoch(model, config, train, valid) -> list[float]:
    """One engine epoch; the time at each step's ``on_step`` report."""
    prep = BatchPreprocessor([], model.backbone.mean, model.backbone.std)
    stamps = []
    Engine(model, prep, config, CLASSES, on_step=lambda step, loss: stamps.append(time.perf_counter())
           ).fit(train, valid, seed=0)
    return stamps


def engine_overhead(steps: int = 6, batch: int = 32, size: int = 112, repeats: int = 3) -> Figure:
    config = _config(batch, steps)
    runtime = Runtime.resolve(config)
    device, amp = runtime.device, runtime.amp_dtype
    torch.manual_seed(0)
    base = build_model(ModelConfig(backbone={"name": "resnet18", "freeze": 0}, head="regression"), CLASSES)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * batch, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, steps * batch)
    train = ImageArrayDataset(images, labels)
    valid = ImageArrayDataset(images[:1], labels[:1])
    batches = [(torch.from_numpy(images[i:i + batch]), torch.from_numpy(labels[i:i + batch]))
               for i in range(0, len(images), batch)]
    mean = torch.tensor(base.backbone.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(base.backbone.std, device=device).view(1, 3, 1, 1)

    hand_rate, engine_rate = [], []
    for _ in range(repeats):
        hand_rate.append(_steps_per_second(_hand_loop(copy.deepcopy(base).to(device), batches, runtime,
                                                      mean, std)))
        engine_rate.append(_steps_per_second(_engine_epoch(copy.deepcopy(base), config, train, valid)))
    ratios = [e / h for e, h in zip(engine_rate, hand_rate)]
    ratio = float(np.median(ratios))
    return Figure("engine_vs_hand_loop_step_throughput", ratio, ">= 0.97", ratio >= 0.97, "x",
                  {"model": "resnet18 + regression head, random init", "input": size, "batch": batch,
                   "steps_timed": steps - 1, "device": str(device), "precision": str(amp or torch.float32),
                   "hand_steps_per_s": hand_rate, "engine_steps_per_s": engine_rate, "paired_ratios": ratios},
                  note=f"resnet18 at {size}px, batch {batch}, {amp or torch.float32} on {device}: median "
                       f"{np.median(engine_rate):.3f} vs {np.median(hand_rate):.3f} steps/s, "
                       f"{repeats} paired repeats")
