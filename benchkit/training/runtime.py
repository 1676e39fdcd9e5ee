"""Where and how models run: device, precision, memory format and evaluation batch, decided once.

A :class:`Runtime` is resolved once from a training recipe (``Runtime.resolve(train)``) and asked by
every loop that runs a model: the engine's training step and evaluation, the frozen-backbone
feature cache and prediction. :func:`forward_all` is the one inference loop of benchkit, so those
three give the same outputs for the same weights and images.

>>> rt = Runtime.resolve(device="cpu", amp=True, amp_dtype="auto", channels_last=False, batch_size=4)
>>> rt.amp_dtype is None, rt.eval_batch_size
(True, 8)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from benchkit.training.batches import batch_loader


@dataclass(frozen=True)
class Runtime:
    """The settings every forward pass asks: device, autocast dtype (None: float32), channels-last,
    the evaluation batch size and the DataLoader workers."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    eval_batch_size: int = 64
    num_workers: int = 0

    @classmethod
    def resolve(cls, train=None, *, device: str | torch.device | None = None, **fields) -> "Runtime":
        """From a ``TrainConfig`` (or its fields as keywords); ``device`` overrides the recipe's.

        ``auto`` means CUDA when present, else CPU. Autocast: float16 on CUDA (bfloat16 when asked),
        on the CPU only when ``amp_dtype: bfloat16`` is asked; none when ``amp`` is off.
        """
        get = (lambda key, default: getattr(train, key, default)) if train is not None else fields.get
        chosen = device if device is not None else get("device", "auto")
        if chosen == "auto":
            chosen = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(chosen)
        amp_dtype = None
        if get("amp", True):
            bf16 = get("amp_dtype", "auto") == "bfloat16"
            amp_dtype = torch.bfloat16 if bf16 else (torch.float16 if dev.type == "cuda" else None)
        batch = get("eval_batch_size", None) or 2 * get("batch_size", 32)
        return cls(dev, amp_dtype, bool(get("channels_last", False)), int(batch), int(get("num_workers", 0)))

    @property
    def precision(self) -> str:
        """The autocast dtype as text (``None`` when the forward runs in float32)."""
        return str(self.amp_dtype)

    def autocast(self):
        """The autocast context of every forward pass (a no-op when running in float32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, channels-last when asked."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """A preprocessed image batch in the memory format the model expects."""
        if self.channels_last and batch.dim() == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch


@torch.inference_mode()
def forward_all(model: nn.Module, data, runtime: Runtime, preprocess: nn.Module | None = None) -> torch.Tensor:
    """``model(preprocess(images))`` for every image of ``data``, in order: float32 on the CPU.

    ``data`` is a dataset of ``(image, level)`` items or a uint8 image array or tensor ``(N, 3, S, S)``
    (read ``runtime.eval_batch_size`` images at a time), or a loader: any iterable of image batches
    or ``(images, levels)`` batches (the engine's, held on the device). ``preprocess(batch, train=False)`` runs on the device. The model is
    evaluated in eval mode and left in the mode it had.
    """
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for batch in _batches(data, runtime):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            inputs = images.to(runtime.device, non_blocking=True)
            if preprocess is not None:
                inputs = preprocess(inputs, train=False)
            with runtime.autocast():
                chunks.append(model(runtime.inputs(inputs)).float())
    finally:
        model.train(was_training)
    return torch.cat(chunks).cpu() if chunks else torch.empty(0)


def _batches(data, runtime: Runtime) -> Iterable:
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return _array_batches(data, runtime)
    if isinstance(data, Dataset):
        return batch_loader(data, runtime.eval_batch_size, shuffle=False, num_workers=runtime.num_workers,
                            pin_memory=runtime.device.type == "cuda")
    return data


def _array_batches(images, runtime: Runtime):
    pin = runtime.device.type == "cuda"
    for start in range(0, len(images), runtime.eval_batch_size):
        chunk = images[start:start + runtime.eval_batch_size]
        batch = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
        yield batch.pin_memory() if pin else batch
