"""Test-time augmentation: a head's estimate averaged over views of every image.

A view is a named, deterministic transform (``identity``, ``rot90``, ``rot180``, ``rot270``,
``hflip``, ``vflip``, ``transpose``) or a kornia augmentation ``{Name: {kwargs}}`` (as in
``train.augmentation``; random ones are seeded per view, so a TTA run repeats exactly). It acts on
the run's own preprocessing: images scaled to ``[0, 1]``, the view, then normalisation. The model
runs once per view through the one inference loop; the head's estimates (scores, probabilities) of
the views are averaged and decoded by the head (:func:`benchkit.models.head.mean_estimate`).

>>> tta_label(["identity", "rot90", "hflip"])
'identity+rot90+hflip'
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from benchkit.errors import ConfigError
from benchkit.models.head import Estimate, Head, mean_estimate
from benchkit.training.transforms import BatchPreprocessor, build_augmentation

ViewSpec = str | dict[str, dict[str, Any]]


class _Fixed(nn.Module):
    """A deterministic view: ``fn(images)`` on ``(B, C, H, W)``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


NAMED_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "rot90": lambda x: torch.rot90(x, 1, (2, 3)),
    "rot180": lambda x: torch.rot90(x, 2, (2, 3)),
    "rot270": lambda x: torch.rot90(x, 3, (2, 3)),
    "hflip": lambda x: x.flip(3),
    "vflip": lambda x: x.flip(2),
    "transpose": lambda x: x.transpose(2, 3),
}


def build_views(tta: Sequence[ViewSpec] | None) -> list[nn.Module]:
    """The view modules of ``evaluation.tta`` (``None`` or ``[]``: no TTA)."""
    views = []
    for i, item in enumerate(tta or []):
        if isinstance(item, str):
            if item not in NAMED_VIEWS:
                raise ConfigError(f"evaluation.tta[{i}]: unknown view {item!r} (named views: "
                                  f"{', '.join(NAMED_VIEWS)}; or a kornia transform {{Name: {{kwargs}}}})")
            views.append(_Fixed(NAMED_VIEWS[item]))
        else:
            transforms = build_augmentation([item], size=0, key="evaluation.tta", first_index=i)
            views.append(nn.Sequential(*transforms))
    return views


def tta_label(tta: Sequence[ViewSpec] | None) -> str:
    """How the leaderboard and ``predict`` name a TTA: the views joined by ``+``, or ``none``."""
    if not tta:
        return "none"
    return "+".join(item if isinstance(item, str) else next(iter(item)) for item in tta)


class ViewPreprocessor(nn.Module):
    """The run's preprocessing with one view applied before normalisation (never augmented)."""

    def __init__(self, base: BatchPreprocessor, view: nn.Module):
        super().__init__()
        self.base = base
        self.view = view

    def forward(self, images: torch.Tensor, train: bool = False, groups=None) -> torch.Tensor:
        return self.base(images, train=False, view=self.view)


def tta_estimate(head: Head, views: Sequence[nn.Module], preprocessor: BatchPreprocessor,
                 forward: Callable[[nn.Module], torch.Tensor], seed: int = 0) -> Estimate:
    """The mean over ``views`` of ``head.estimate(forward(view preprocessing))``.

    ``forward(preprocess)`` runs the model over the images with that preprocessing and returns raw
    head outputs (``forward_all``). Random views draw from a generator seeded with ``seed + i``.
    """
    buffer = next(iter(preprocessor.buffers()), None)
    device = buffer.device if buffer is not None else torch.device("cpu")
    estimates = []
    for i, view in enumerate(views):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + i)
            outputs = forward(ViewPreprocessor(preprocessor, view.to(device)))
        estimates.append(head.estimate(outputs))
    return mean_estimate(estimates)
