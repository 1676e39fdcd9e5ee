"""Device figures of one training run: images/s per model and mode, the engine against a hand-written step,
and the augmentation's cost per image.

Every figure trains on random uint8 images held on the device (the data-on-device path), with the reference
kornia augmentation, AdamW (fused on CUDA) and autocast; EMA as the reference recipe has it (beta 0.999, every
10 steps) except in the engine-vs-hand comparison, where both sides leave it out. A figure is the steady
state: the engine trains two capped epochs and the training part of the second one is timed (the first
holds compilation and CUDA-graph capture; validation is left out); the hand-written step likewise runs
one untimed epoch first.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np
import torch

import benchkit.backbones  # noqa: F401
from benchkit.config import ModelConfig, TrainConfig
from benchkit.models.grader import build_model
from benchkit.training.batches import preprocessed
from benchkit.training.engine import Engine
from benchkit.training.transforms import BatchPreprocessor, reference_augmentation

from _bench import Figure

CLASSES = 6
CUDA_GRAPHS = ("reduce-overhead", "max-autotune")


class RandomImages:
    """``n`` uint8 images cycling through a pool of random ones, with random levels (array-dataset API)."""

    def __init__(self, n: int, size: int, seed: int = 0, pool: int = 512):
        rng = np.random.default_rng(seed)
        self.pool = rng.integers(0, 256, (min(pool, n), 3, size, size), dtype=np.uint8)
        self.labels = rng.integers(0, CLASSES, n)
        self.images = self  # nbytes below, for the fits-on-device check
        self.nbytes = n * 3 * size * size

    def __len__(self) -> int:
        return len(self.labels)

    def gather(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(self.pool[idx % len(self.pool)]), torch.from_numpy(self.labels[idx])


@dataclass
class Setting:
    """One training configuration: model, batch, compile mode (None: eager), precision, memory format."""

    model: str
    batch: int
    compile: str | None = None
    amp_dtype: str = "bfloat16"
    channels_last: bool = False
    ema: bool = True
    size: int = 224

    @property
    def label(self) -> str:
        mode = self.compile or "eager"
        layout = "_channels_last" if self.channels_last else ""
        return f"{self.model}_b{self.batch}_{mode}_{self.amp_dtype}{layout}"

    def recipe(self, steps: int, device: torch.device) -> TrainConfig:
        return TrainConfig(epochs=2, batch_size=self.batch, max_train_batches=steps, log_every=10 ** 6,
                           device=str(device), amp=True, amp_dtype=self.amp_dtype,
                           channels_last=self.channels_last, compile=self.compile or False,
                           ema={"enabled": self.ema, "beta": 0.999, "update_after_step": 0, "update_every": 10},
                           early_stopping={"patience": None}, augmentation="reference")

    def build(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(ModelConfig(backbone={"name": self.model, "pretrained": False, "freeze": 0},
                                       head="regression"), CLASSES, self.size)


def release() -> None:
    """Free what the last measurement held: compiled graphs, CUDA-graph pools, cached blocks."""
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def engine_rate(setting: Setting, steps: int, device: torch.device) -> dict:
    """Images/s of the engine's second (timed) epoch, the first epoch's seconds and the peak memory."""
    steps = max(steps, 2)
    train = RandomImages(steps * setting.batch, setting.size)
    valid = RandomImages(min(setting.batch, 64), setting.size, seed=1)
    model = setting.build()
    prep = BatchPreprocessor(reference_augmentation(setting.size), model.backbone.mean, model.backbone.std)
    engine = Engine(model, prep, setting.recipe(steps, device), CLASSES)
    seconds = _time_training_epochs(engine)
    try:
        engine.fit(train, valid, seed=0)
        return {"images_per_s": steps * setting.batch / seconds[1], "first_epoch_seconds": seconds[0],
                "steps_timed": steps, "peak_gpu_mb": _peak_mb(device)}
    finally:
        del engine, model
        release()


def _time_training_epochs(engine: Engine) -> list[float]:
    """Seconds of each of the engine's training epochs, validation left out. An epoch ends by reading its
    loss from the device, so the time includes the GPU's work."""
    seconds: list[float] = []
    train_epoch = engine._train_epoch

    def timed(*args):
        start = time.perf_counter()
        loss = train_epoch(*args)
        seconds.append(time.perf_counter() - start)
        return loss

    engine._train_epoch = timed
    return seconds


def largest_batch_rate(setting: Setting, candidates: list[int], steps: int, device: torch.device) -> dict:
    """The engine's rate at the largest of ``candidates`` that fits (tried from the largest down)."""
    tried = []
    for batch in sorted(candidates, reverse=True):
        attempt = Setting(**{**setting.__dict__, "batch": batch})
        try:
            result = engine_rate(attempt, steps, device)
        except torch.OutOfMemoryError:
            tried.append(batch)
            release()
            continue
        return {**result, "batch": batch, "out_of_memory_at": tried, "largest_tried": max(candidates)}
    return {"images_per_s": None, "batch": None, "out_of_memory_at": tried}


def hand_rate(setting: Setting, steps: int, chunk: int, device: torch.device) -> float:
    """Images/s of a minimal hand-written loop at ``setting`` (no EMA): the same device-held images,
    the same augmentation on chunks of ``chunk`` batches, autocast, fused AdamW on CUDA, compile."""
    model = setting.build().to(device)
    if setting.channels_last:
        model = model.to(memory_format=torch.channels_last)
    prep = BatchPreprocessor(reference_augmentation(setting.size), model.backbone.mean, model.backbone.std).to(device)
    images, labels = (t.to(device) for t in RandomImages(steps * setting.batch, setting.size).gather(
        np.arange(steps * setting.batch)))
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[setting.amp_dtype]
    autocast = device.type == "cuda" or dtype == torch.bfloat16
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=1e-8,
                            fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=autocast and dtype == torch.float16)
    forward = torch.compile(model, mode=setting.compile) if setting.compile else model
    graphs = setting.compile in CUDA_GRAPHS and device.type == "cuda"
    model.train()

    def epoch() -> None:
        order = torch.randperm(len(labels), device=device)
        for start in range(0, steps, chunk):
            idx = order[start * setting.batch:(start + chunk) * setting.batch]
            groups = [setting.batch] * (len(idx) // setting.batch)
            with torch.no_grad():
                x = prep(images[idx], train=True, groups=groups)
            for part, y in zip(x.split(setting.batch), labels[idx].split(setting.batch)):
                if setting.channels_last:
                    part = part.contiguous(memory_format=torch.channels_last)
                if graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                    out = forward(part)
                loss = model.head.loss(out.float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        _sync(device)

    try:
        epoch()
        start = time.perf_counter()
        epoch()
        return steps * setting.batch / (time.perf_counter() - start)
    finally:
        del forward, model, opt
        release()


def augmentation_cost(device: torch.device, size: int, images: int, chunks: list[int], batch: int = 32) -> dict:
    """Milliseconds per image of the reference augmentation applied to batches of ``batch`` and to chunks."""
    prep = BatchPreprocessor(reference_augmentation(size), (0.5,) * 3, (0.5,) * 3).to(device)
    data = torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.zeros(images, device=device)
    batches = list(zip(data.split(batch), labels.split(batch)))
    out = {}
    for chunk_images in [batch] + chunks:
        chunk = max(1, chunk_images // batch)
        for _ in preprocessed(batches[:chunk], prep, chunk):  # warm-up at this shape
            pass
        _sync(device)
        start = time.perf_counter()
        for _ in preprocessed(batches, prep, chunk):
            pass
        _sync(device)
        out[chunk * batch] = 1000 * (time.perf_counter() - start) / images
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 20) if device.type == "cuda" else None


# ---------------------------------------------------------------- figures

def throughput_figure(setting: Setting, steps: int, device: torch.device, target: float | None) -> Figure:
    result = engine_rate(setting, steps, device)
    rate = result["images_per_s"]
    met = None if target is None else rate >= target
    return Figure(f"train_images_per_s_{setting.label}", rate, f">= {target:.0f}" if target else "none (reference)",
                  met, " img/s", {**result, "setting": setting.__dict__, "device": str(device)},
                  note=f"engine, reference augmentation, EMA, {setting.size}px; first epoch"
                       f"{' (compile, capture)' if setting.compile else ''} {result['first_epoch_seconds']:.1f} s; "
                       f"peak {result['peak_gpu_mb']} MB")


def largest_batch_figure(setting: Setting, candidates: list[int], steps: int, device: torch.device) -> Figure:
    result = largest_batch_rate(setting, candidates, steps, device)
    fits = result["batch"]
    capped = "" if result.get("out_of_memory_at") else f" (largest tried: {max(candidates)})"
    return Figure(f"train_images_per_s_{setting.model}_largest_batch_{setting.compile or 'eager'}",
                  result["images_per_s"], "none (reference)", None, " img/s", {**result, "setting": setting.__dict__},
                  note=f"batch {fits}{capped}; out of memory at {result.get('out_of_memory_at') or 'none'}")


def engine_vs_hand_figure(setting: Setting, steps: int, chunk: int, device: torch.device, repeats: int) -> Figure:
    """Median of paired ratios, sides alternating; EMA off on both sides."""
    setting = Setting(**{**setting.__dict__, "ema": False})
    hand, engine = [], []
    for _ in range(repeats):
        hand.append(hand_rate(setting, steps, chunk, device))
        engine.append(engine_rate(setting, steps, device)["images_per_s"])
    ratios = [e / h for e, h in zip(engine, hand)]
    ratio = float(np.median(ratios))
    return Figure(f"engine_vs_hand_step_{setting.label}", ratio, ">= 0.97", ratio >= 0.97, "x",
                  {"hand_images_per_s": hand, "engine_images_per_s": engine, "paired_ratios": ratios,
                   "setting": setting.__dict__, "augment_chunk_batches": chunk},
                  note=f"engine {np.median(engine):.0f} vs hand {np.median(hand):.0f} img/s, same model, batch, "
                       f"precision, augmentation (chunks of {chunk} batches), device-held data; {repeats} pairs")


def augmentation_figures(device: torch.device, size: int, images: int, chunks: list[int]) -> list[Figure]:
    cost = augmentation_cost(device, size, images, chunks)
    per_batch = cost[min(cost)]
    figures = [Figure("augmentation_ms_per_image_batch32", per_batch, "none (reference)", None, " ms",
                      {"ms_per_image": cost, "images": images, "size": size})]
    for chunk, ms in sorted(cost.items())[1:]:
        ratio = ms / per_batch
        figures.append(Figure(f"augmentation_chunk{chunk}_vs_batch32_cost_per_image", ratio, "<= 0.3x",
                              ratio <= 0.3, "x", {"ms_per_image": ms, "batch32_ms_per_image": per_batch},
                              note=f"{ms:.3f} vs {per_batch:.3f} ms per image at {size}px"))
    return figures
