"""Batch preprocessing on the training device: uint8 images -> (augmented) normalized floats.

Images travel as uint8 ``(B, 3, H, W)`` tensors (decoded and resized once); augmentation runs on
whole batches with kornia, so it costs GPU time on a GPU and is never repeated per file decode.
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator, Sequence

import kornia.augmentation as K
import numpy as np
import torch
from torch import nn

from benchkit.errors import ConfigError


def reference_augmentation(size: int) -> list[nn.Module]:
    """The seed study's augmentation, exactly (before ImageNet normalisation)."""
    return [
        K.RandomRotation(degrees=22.5, p=0.5),
        K.RandomResizedCrop((size, size), scale=(0.7, 1.0), ratio=(0.9, 1.1), p=0.6),
        K.RandomEqualize(p=0.6),
        K.RandomGaussianNoise(std=0.075, p=0.33),
        K.RandomSaturation((0.75, 1.25), p=0.5),
        K.RandomHue((-0.01, 0.01), p=0.8),
        K.RandomContrast((0.8, 1.2), p=0.7),
        K.RandomBrightness((0.8, 1.1), p=0.7),
        K.RandomPerspective(0.2, p=0.33),
    ]


def build_augmentation(augmentation: str | list[dict[str, dict[str, Any]]], size: int,
                       key: str = "train.augmentation", first_index: int = 0) -> list[nn.Module]:
    """``"reference"``, ``"none"`` or a list of ``{KorniaTransformName: {kwargs}}``; errors name
    ``key[first_index + i]`` (the setting the list came from)."""
    if augmentation == "reference":
        return reference_augmentation(size)
    if augmentation == "none":
        return []
    transforms = []
    for i, item in enumerate(augmentation, start=first_index):
        if len(item) != 1:
            raise ConfigError(f"{key}[{i}]: expected one {{Name: {{kwargs}}}} mapping, got {item}")
        (name, kwargs), = item.items()
        cls = getattr(K, name, None)
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            close = difflib.get_close_matches(name, [n for n in dir(K) if n.startswith("Random")], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}[{i}]: {name!r} is not a kornia.augmentation transform{hint}")
        try:
            transforms.append(cls(**(kwargs or {})))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}[{i}] {name}: {exc}") from None
    return transforms


class BatchPreprocessor(nn.Module):
    """uint8 ``(B, 3, H, W)`` -> float in [0, 1] -> augmentation (training only) -> normalisation.

    >>> prep = BatchPreprocessor([], mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> prep(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8), train=False).max().item()
    1.0
    """

    def __init__(self, augmentation: Sequence[nn.Module], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.augmentation = nn.Sequential(*augmentation)
        self.normalize = K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))

    def forward(self, images: torch.Tensor, train: bool, groups: Sequence[int] | None = None,
                view: nn.Module | None = None, seed: int | None = None) -> torch.Tensor:
        """``groups``: sizes of the training batches ``images`` concatenates (see :func:`augment`);
        ``view``: a test-time view applied before normalisation (see :mod:`benchkit.training.tta`);
        ``seed``: the augmentation draws come from this seed alone (:func:`drawn_from`), else from torch's
        global random state."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if train and len(self.augmentation):
            with drawn_from(seed, x.device) if seed is not None else nullcontext():
                x = augment(self.augmentation, x, groups).clamp_(0.0, 1.0)
        if view is not None:
            x = view(x)
        return self.normalize(x)


def augmentation_seed(seed: int, epoch: int, call: int) -> int:
    """The seed of a run's ``call``-th augmentation call of ``epoch``: a stream of its own, so the run's seed
    decides the draws while dropout and the batch order draw elsewhere (and a resumed run draws the same).

    >>> augmentation_seed(0, 1, 0) == augmentation_seed(0, 1, 0) != augmentation_seed(1, 1, 0)
    True
    """
    return int(np.random.SeedSequence([seed % 2**64, epoch, call]).generate_state(1, np.uint64)[0])


@contextmanager
def drawn_from(seed: int, device: torch.device) -> Iterator[None]:
    """Random draws inside come from ``seed`` (on the CPU and on ``device``'s GPU); torch's global random
    state outside is left as it was."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def augment(transforms: Sequence[nn.Module], x: torch.Tensor, groups: Sequence[int] | None = None) -> torch.Tensor:
    """Apply kornia ``transforms`` in order to a batch, or to a chunk made of batches of sizes ``groups``.

    kornia draws each transform's parameters and its ``p`` per image, so a chunk gives every image the
    per-batch distribution. A few transforms decide once per call instead (``p_batch < 1``: kornia's
    RandomResizedCrop crops the whole batch or none of it); for those the decision is drawn once per
    group, so a chunk is augmented as its batches would be one at a time, in one call.
    """
    for transform in transforms:
        p_batch = float(getattr(transform, "p_batch", 1.0))
        if groups is None or len(groups) < 2 or p_batch >= 1.0:
            x = transform(x)
            continue
        transform.p_batch = 1.0
        try:
            every = transform(x)
        finally:
            transform.p_batch = p_batch
        if every.shape != x.shape:  # output size differs: no mixing, one call per group
            x = torch.cat([transform(part) for part in x.split(list(groups))])
            continue
        chosen = torch.rand(len(groups), device=x.device) < p_batch
        applied = chosen.repeat_interleave(torch.as_tensor(list(groups), device=x.device), output_size=len(x))
        x = torch.where(applied[:, None, None, None], every, x)
        transform._params["batch_prob"] = applied  # kornia's record of which images it changed
    return x
