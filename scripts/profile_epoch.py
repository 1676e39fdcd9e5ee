"""Where a training epoch's time goes: a torch.profiler summary of benchkit's engine on one device.

    python scripts/profile_epoch.py --device cuda --out profile.txt     # on the GPU machine (gpu_check.sh)
    python scripts/profile_epoch.py --device cpu --steps 3 --size 64    # the same code here, as a check

Trains ``--steps`` batches of random images (a training step's kernels do not depend on the pixels) through
:class:`benchkit.training.engine.Engine` with the reference kornia augmentation, under ``torch.profiler``, and
writes the top operators by device time and the share of the profiled wall time the device sat idle (1 - kernel
time / wall time). A missed throughput figure is chased from here: a high idle share points at the input
pipeline or at launch overhead, a few dominant kernels at the model itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import benchkit.backbones  # noqa: F401  (registers the curated backbones)
from benchkit.config import ModelConfig, TrainConfig
from benchkit.data.decode import ImageArrayDataset
from benchkit.models.grader import build_model
from benchkit.training.engine import Engine
from benchkit.training.runtime import Runtime
from benchkit.training.transforms import BatchPreprocessor, build_augmentation

CLASSES = 6


def profile_epoch(device: str, backbone: str, steps: int, batch: int, size: int, rows: int) -> str:
    config = TrainConfig(epochs=1, batch_size=batch, max_train_batches=steps, device=device,
                         ema={"enabled": False}, log_every=1)
    runtime = Runtime.resolve(config)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone={"name": backbone, "freeze": 0}, head="regression"), CLASSES)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * batch, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, steps * batch)
    train, valid = ImageArrayDataset(images, labels), ImageArrayDataset(images[:batch], labels[:batch])
    prep = BatchPreprocessor(build_augmentation(config.augmentation, size), model.backbone.mean, model.backbone.std)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if runtime.device.type == "cuda" else [])
    engine = Engine(model, prep, config, CLASSES, runtime=runtime)
    begin = time.perf_counter()
    with profile(activities=activities) as prof:
        engine.fit(train, valid, seed=0)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
    wall_us = (time.perf_counter() - begin) * 1e6
    on_device = runtime.device.type == "cuda"
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages()) if on_device else 0.0
    sort_by = "self_device_time_total" if on_device else "self_cpu_time_total"
    lines = [f"device {runtime.device} ({torch.cuda.get_device_name(0) if on_device else 'CPU'}), "
             f"{backbone} at {size} px, batch {batch}, {steps} steps, precision {runtime.amp_dtype or torch.float32}",
             f"profiled wall time: {wall_us / 1e6:.2f} s"]
    if on_device:
        lines.append(f"device busy: {kernel_us / 1e6:.2f} s; device idle share: {max(0.0, 1 - kernel_us / wall_us):.1%}")
    lines.append(prof.key_averages().table(sort_by=sort_by, row_limit=rows))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="a registered backbone (random init)")
    parser.add_argument("--steps", type=int, default=12, help="training batches profiled")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="input size in pixels")
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    parser.add_argument("--out", type=Path, help="write the summary here as well as to stdout")
    args = parser.parse_args(argv)
    text = profile_epoch(args.device, args.backbone, args.steps, args.batch, args.size, args.rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
