"""Where and how models run: device, precision, memory format, compilation, batches, decided once.

A :class:`Runtime` is resolved once from a training recipe (``Runtime.resolve(train)``) and asked by
every loop that runs a model: the engine's training step and evaluation, the frozen-backbone
feature cache and prediction. :func:`forward_all` is the one inference loop of benchkit, so those
three give the same outputs for the same weights and images. The GPU settings live here too:
``torch.compile`` and its CUDA graphs, fused optimizer kernels, the data held on the device and
how many training batches one augmentation call covers.

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

from benchkit.training.batches import ResidentSplits, batch_loader, choose_loader, chunk_batches
from benchkit.training.compiled import compile_mode, compiled_forward, replays_cuda_graphs
from benchkit.training.optim import FUSED

CUDA_EVAL_BATCH = 256
"""Smallest default evaluation batch on CUDA: inference of a few hundred images is one or two calls."""


@dataclass(frozen=True)
class Runtime:
    """The settings every forward pass asks: device, autocast dtype (None: float32), channels-last,
    the evaluation batch size and the DataLoader workers; for training also the ``torch.compile``
    mode (None: eager), fused optimizer kernels, whether splits are held on the device (``"auto"``:
    on CUDA when they fit) and the training batches per augmentation call."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    eval_batch_size: int = 64
    num_workers: int = 0
    compile_mode: str | None = None
    fused: bool = False
    data_on_device: bool | str = "auto"
    augment_batches: int = 1

    @classmethod
    def resolve(cls, train=None, *, device: str | torch.device | None = None, **fields) -> "Runtime":
        """From a ``TrainConfig`` (or its fields as keywords); ``device`` overrides the recipe's.

        ``auto`` means CUDA when present, else CPU. Autocast: float16 on CUDA (bfloat16 when asked),
        on the CPU only when ``amp_dtype: bfloat16`` is asked; none when ``amp`` is off. Evaluation
        batch: ``eval_batch_size``, else twice the training batch (at least 256 on CUDA). Fused
        optimizer kernels when asked, or on CUDA for AdamW, Adam and SGD (``optimizer.fused: auto``).
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
        train_batch = get("batch_size", 32)
        batch = get("eval_batch_size", None) or max(2 * train_batch, CUDA_EVAL_BATCH if dev.type == "cuda" else 0)
        optimizer = get("optimizer", None)
        fused = optimizer is not None and (optimizer.fused is True or (
            optimizer.fused == "auto" and dev.type == "cuda" and optimizer.name in FUSED))
        return cls(dev, amp_dtype, bool(get("channels_last", False)), int(batch), int(get("num_workers", 0)),
                   compile_mode(get("compile", False)), fused, get("data_on_device", "auto"),
                   chunk_batches(get("augment_chunk", "auto"), train_batch, dev))

    @property
    def static_shapes(self) -> bool:
        """Compiled training sees one batch shape: the ragged last training batch is dropped."""
        return self.compile_mode is not None

    @property
    def cuda_graphs(self) -> bool:
        """Each training step replays CUDA graphs and must be marked as a new iteration."""
        return replays_cuda_graphs(self.compile_mode, self.device)

    def compiled(self, model: nn.Module) -> nn.Module:
        """The training forward: ``model`` itself when eager, else its compiled wrapper."""
        return compiled_forward(model, self.compile_mode)

    def loader(self, dataset: Dataset, *, shuffle: bool, generator: torch.Generator | None = None,
               batch_size: int | None = None, resident: ResidentSplits | None = None):
        """Batches of ``dataset`` arriving on the device (held there when it fits, see batches.py);
        shuffled ones are training batches (full ones only when compiled)."""
        return choose_loader(dataset, batch_size or self.eval_batch_size, self.device, on_device=self.data_on_device,
                             shuffle=shuffle, generator=generator, num_workers=self.num_workers, resident=resident,
                             drop_last=shuffle and self.static_shapes)

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


def device_problem(device: str | None, what: str, present: bool = True) -> str | None:
    """Why ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...) cannot be used (not a torch device or, with
    ``present``, absent from this machine), naming the setting ``what``; None when it can."""
    if device is None or device == "auto":
        return None
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        return f"{what} {device!r}: not a torch device (e.g. auto, cpu, cuda, cuda:1)"
    if not present or chosen.type in ("cpu", "meta"):
        return None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        return f"{what} {device!r}: no CUDA device is available here (use cpu or auto)"
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        return f"{what} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        return f"{what} {device!r}: no MPS device is available here (use cpu or auto)"
    return None


@torch.inference_mode()
def forward_all(model: nn.Module, data, runtime: Runtime, preprocess: nn.Module | None = None) -> torch.Tensor:
    """``model(preprocess(images))`` for every image of ``data``, in order: float32 on the CPU.

    ``data`` is a dataset of ``(image, level)`` items or a uint8 image array or tensor ``(N, 3, S, S)``
    (read ``runtime.eval_batch_size`` images at a time), or a loader: any iterable of image batches
    or ``(images, levels)`` batches (the engine's, held on the device). ``preprocess(batch, train=False)``
    runs on the device. The model is left in eval mode, as after any evaluation (the engine's next
    epoch puts it back in training mode; the feature cache restores its backbone's mode).
    """
    model.eval()
    chunks = []
    for batch in _batches(data, runtime):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        inputs = images.to(runtime.device, non_blocking=True)
        if preprocess is not None:
            inputs = preprocess(inputs, train=False)
        with runtime.autocast():
            chunks.append(model(runtime.inputs(inputs)).float())
    return torch.cat(chunks).cpu() if chunks else torch.empty(0)


def _batches(data, runtime: Runtime) -> Iterable:
    if isinstance(data, (np.ndarray, torch.Tensor)) or hasattr(data, "__array__"):  # MappedRows too
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
