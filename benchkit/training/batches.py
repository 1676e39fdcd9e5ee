"""Batches on the training device, and augmentation applied to many of them at once.

Two sources give the same batches in the same order (iterate once per epoch; ``len`` = batches):

- :class:`DeviceLoader`: the whole split lives on the device (uint8 images and levels); a batch is
  one indexing of it, so a step copies nothing from the host and collates nothing in Python.
- :func:`batch_loader` through :class:`ToDevice`: a DataLoader reading a batch at a time from the
  (memory-mapped) arrays, pinned and copied to the device per batch; for splits that do not fit.

:func:`choose_loader` picks one (``train.data_on_device``); :func:`preprocessed` turns batches into
model inputs, augmenting ``chunk`` batches per kornia call with the per-batch distribution of every
image's transforms (:func:`benchkit.training.transforms.augment`) and far fewer launches per image.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

DEVICE_SHARE = 0.25
"""At most this share of the device's free memory holds a split (the model, its activations and
other runs packed on the same GPU need the rest)."""

CUDA_CHUNK_IMAGES = 256
"""Images per augmentation call on CUDA under ``augment_chunk: auto`` (one batch per call on CPU)."""


def batch_loader(dataset: Dataset, batch_size: int, *, shuffle: bool,
                 generator: torch.Generator | None = None, num_workers: int = 0,
                 pin_memory: bool = False, drop_last: bool = False) -> DataLoader:
    """The engine's DataLoader; a dataset with ``gather(indices)`` is read a whole batch at a time.

    Shuffled (training) batches are never a single image (:class:`TrainBatches`).
    """
    options = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                   generator=generator)
    batches = _batch_sampler(len(dataset), batch_size, shuffle, generator, drop_last)
    if hasattr(dataset, "gather"):
        return DataLoader(_Gathered(dataset), sampler=batches, batch_size=None, **options)
    return DataLoader(dataset, batch_sampler=batches, **options)


class DeviceLoader:
    """A split held on ``device``; iterating gives one epoch of ``(uint8 images, levels)`` batches.

    Batches come in the same order, from the same random draws, as :func:`batch_loader`'s with
    ``num_workers: 0``, including the one number a DataLoader draws each time it starts an epoch
    (from ``generator``, else from torch's global generator, which the augmentation also uses).
    """

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device, *, shuffle: bool,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 resident: "ResidentSplits | None" = None):
        self.images, self.labels = (resident or ResidentSplits()).get(dataset, device)
        self.batch_size, self.shuffle, self.generator, self.drop_last = batch_size, shuffle, generator, drop_last

    def __len__(self) -> int:
        return len(_batch_sampler(len(self.labels), self.batch_size, self.shuffle, None, self.drop_last))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # as DataLoader's base seed
        sampler = _batch_sampler(len(self.labels), self.batch_size, self.shuffle, self.generator, self.drop_last)
        batches = list(sampler)
        if not batches:
            return
        order = torch.as_tensor(np.concatenate(batches)).to(self.images.device, non_blocking=True)
        for batch in order.split([len(b) for b in batches]):
            yield self.images.index_select(0, batch), self.labels.index_select(0, batch)


class ResidentSplits:
    """Device copies of array-backed splits, made once and reused (validation runs every epoch)."""

    def __init__(self):
        self._held: dict[int, tuple[Dataset, torch.Tensor, torch.Tensor]] = {}

    def holds(self, dataset: Dataset, device: torch.device | str) -> bool:
        """Whether ``dataset`` is already on ``device`` (``cuda`` and ``cuda:0`` name the same one)."""
        held = self._held.get(id(dataset))
        return held is not None and held[0] is dataset and held[1].device == resolved_device(device)

    def get(self, dataset: Dataset, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, levels)`` of the whole split on ``device``."""
        if not self.holds(dataset, device):
            images, labels = dataset.gather(np.arange(len(dataset)))
            self._held[id(dataset)] = (dataset, images.to(device), labels.to(device))
        _, images, labels = self._held[id(dataset)]
        return images, labels


def resolved_device(device: torch.device | str) -> torch.device:
    """``device`` as its tensors report it (``cuda`` -> ``cuda:<current>``, ``cpu:0`` -> ``cpu``)."""
    return torch.empty(0, device=device).device


class ToDevice:
    """A DataLoader whose batches arrive on ``device`` (copied from pinned memory without blocking)."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, targets in self.loader:
            yield images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


def fits_on_device(dataset: Dataset, device: torch.device) -> bool:
    """Whether ``dataset`` (array-backed) takes at most :data:`DEVICE_SHARE` of the free CUDA memory."""
    if device.type != "cuda" or not hasattr(dataset, "gather"):
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return dataset_bytes(dataset) <= DEVICE_SHARE * free


def dataset_bytes(dataset: Dataset) -> int:
    """Bytes of an array-backed dataset's inputs and levels."""
    inputs = getattr(dataset, "images", None)
    if inputs is None:
        inputs = getattr(dataset, "features")
    return int(inputs.nbytes) + 8 * len(dataset)


def choose_loader(dataset: Dataset, batch_size: int, device: torch.device, *, on_device: bool | str,
                  shuffle: bool, generator: torch.Generator | None = None, drop_last: bool = False,
                  num_workers: int = 0, resident: ResidentSplits | None = None):
    """The batches of ``dataset`` on ``device``: held there when ``on_device`` is true, or ``"auto"``
    and it fits or is held already (CUDA only: on CPU the memory-mapped arrays stay out of RAM); else a
    pinned DataLoader."""
    held = resident is not None and resident.holds(dataset, device)
    hold = on_device is True or (on_device == "auto" and (held or fits_on_device(dataset, device)))
    if hold and hasattr(dataset, "gather"):
        return DeviceLoader(dataset, batch_size, device, shuffle=shuffle, generator=generator, drop_last=drop_last,
                            resident=resident)
    loader = batch_loader(dataset, batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers,
                          pin_memory=device.type == "cuda", drop_last=drop_last)
    return ToDevice(loader, device)


def chunk_batches(chunk: int | str, batch_size: int, device: torch.device) -> int:
    """Training batches per augmentation call for ``train.augment_chunk`` (images, or ``auto``)."""
    images = (CUDA_CHUNK_IMAGES if device.type == "cuda" else batch_size) if chunk == "auto" else int(chunk)
    return max(1, round(images / batch_size))


def preprocessed(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], preprocessor: nn.Module,
                 chunk: int = 1, seeds: Callable[[int], int] | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training inputs: ``chunk`` batches concatenated, preprocessed (augmented) in one call, split again;
    ``seeds(i)``: the seed of the ``i``-th call's augmentation draws (default: torch's global random state).

    >>> from benchkit.training.transforms import BatchPreprocessor
    >>> prep = BatchPreprocessor([], mean=(0.0,) * 3, std=(1.0,) * 3)
    >>> batches = [(torch.full((2, 3, 1, 1), 255, dtype=torch.uint8), torch.tensor([0, 1]))] * 3
    >>> [tuple(x.shape) for x, _ in preprocessed(batches, prep, chunk=2)]
    [(2, 3, 1, 1), (2, 3, 1, 1), (2, 3, 1, 1)]
    """
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []
    calls = 0
    for batch in batches:
        pending.append(batch)
        if len(pending) == chunk:
            yield from _augment_together(pending, preprocessor, seeds and seeds(calls))
            pending, calls = [], calls + 1
    if pending:
        yield from _augment_together(pending, preprocessor, seeds and seeds(calls))


def _augment_together(batches: list[tuple[torch.Tensor, torch.Tensor]], preprocessor: nn.Module,
                      seed: int | None = None):
    with torch.no_grad():  # closed before any yield: the caller's step runs with gradients
        images = batches[0][0] if len(batches) == 1 else torch.cat([images for images, _ in batches])
        groups = [len(t) for _, t in batches]
        inputs = preprocessor(images, train=True, groups=groups, seed=seed)
    yield from zip(inputs.split([len(t) for _, t in batches]), [t for _, t in batches])


def _batch_sampler(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                   drop_last: bool) -> Sampler:
    """Index batches: shuffled ones (training) never hold a single image, sequential ones any number."""
    if shuffle and not drop_last:
        return TrainBatches(RandomSampler(range(n), generator=generator), batch_size)
    order = RandomSampler(range(n), generator=generator) if shuffle else SequentialSampler(range(n))
    return BatchSampler(order, batch_size, drop_last=drop_last)


class TrainBatches(Sampler):
    """Batches of ``batch_size`` indices in ``sampler`` order; a last batch of one is merged into the one before.

    BatchNorm cannot train on one image. Every other batch is what ``BatchSampler(sampler, batch_size,
    drop_last=False)`` gives, from the same draws, so runs whose size leaves no lone image are unchanged.
    """

    def __init__(self, sampler: Sampler, batch_size: int):
        self.batches = BatchSampler(sampler, batch_size, drop_last=False)
        self.size, self.batch_size = len(sampler), batch_size

    def __iter__(self):
        held = None
        for batch in self.batches:
            if held is not None and len(batch) == 1:
                batch, held = held + batch, None
            if held is not None:
                yield held
            held = batch
        if held is not None:
            yield held

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + int(rest > 1 or (rest == 1 and full == 0))


class _Gathered(Dataset):
    """Indexed by whole batches: ``dataset.gather(indices)`` copies a batch at once.

    Batches come in the same order, from the same generator draws, as a shuffling DataLoader's.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]):
        return self.dataset.gather(indices)
