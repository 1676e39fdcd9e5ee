"""The head contract: a head owns its output layer, its loss and its decoding.

Every head maps pooled backbone features ``(B, in_features)`` to raw outputs and answers, from
those raw outputs alone: the loss for integer levels ``0..K-1``, the predicted level, a continuous
score on the level scale ``[0, K-1]`` (used for MAE), and the K class probabilities where the
formulation defines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class Prediction:
    """Decoded outputs of a batch: ``level`` (B,) long, ``score`` (B,) float, ``probs`` (B, K) or None."""

    level: torch.Tensor
    score: torch.Tensor
    probs: torch.Tensor | None = None


class Head(nn.Module):
    """Base class of all heads. Subclasses set the class attributes and implement the three methods.

    ``calibrate`` is optional: heads whose decoding can be fitted on validation outputs
    (cut points, thresholds) store the result in buffers, so it travels with the checkpoint.
    """

    has_probabilities: ClassVar[bool] = False
    decodings: ClassVar[tuple[str, ...]] = ("default",)

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"an ordinal head needs at least 2 classes, got {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor,
             class_weights: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    def calibrate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict | None:
        """Fit decoding parameters on validation outputs; returns what was fitted (or None)."""
        return None
