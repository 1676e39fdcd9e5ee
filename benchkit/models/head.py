"""The head contract: a head owns its output layer, its loss and its decoding.

Every head maps pooled backbone features ``(B, in_features)`` to raw outputs and answers, from
those raw outputs alone: the loss for integer levels ``0..K-1``, the predicted level, a continuous
score on the level scale ``[0, K-1]`` (used for MAE), and the K class probabilities where the
formulation defines them.

Decoding goes through an *estimate*: the named probabilities or level-scale scores a head decodes
from (``score``, ``probs``, ``exceedance``). Means of estimates are estimates, so test-time
augmentation (views of one image) and ensembles (several models) average them and decode the mean
with the head's own decodings: ``predict(outputs) == decode_estimate(estimate(outputs))[decode]``.
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


Estimate = dict[str, torch.Tensor]


def mean_estimate(estimates: list[Estimate]) -> Estimate:
    """The element-wise mean of several estimates of the same images, over the keys they all have."""
    if not estimates:
        raise ValueError("no estimates to average")
    keys = [k for k in estimates[0] if all(k in e for e in estimates[1:])]
    return {k: torch.stack([e[k].double() for e in estimates]).mean(0).to(estimates[0][k].dtype) for k in keys}


def generic_decodings(estimate: Estimate) -> dict[str, Prediction]:
    """Decoding of any estimate: the most probable level when it has ``probs``, else the rounded score."""
    probs = estimate.get("probs")
    if probs is not None:
        score = estimate.get("score")
        if score is None:
            score = (probs * torch.arange(probs.shape[1], dtype=probs.dtype)).sum(1)
        return {"default": Prediction(probs.argmax(1), score, probs)}
    score = estimate["score"]
    return {"default": Prediction(torch.round(score).clamp_min(0).long(), score)}


class Head(nn.Module):
    """Base class of all heads. Subclasses set the class attributes and implement ``forward``,
    ``loss`` and either ``predict`` or (to take part in test-time augmentation and ensembles with
    their own decodings) ``estimate`` and ``decode_estimate``.

    ``calibrate`` is optional: heads whose decoding can be fitted on validation outputs
    (cut points, thresholds) store the result in buffers, so it travels with the checkpoint.
    """

    has_probabilities: ClassVar[bool] = False
    decodings: ClassVar[tuple[str, ...]] = ("default",)
    decode: str = "default"

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

    def estimate(self, outputs: torch.Tensor) -> Estimate:
        """The averageable quantities this head decodes from (default: the score and probabilities of
        ``predict``)."""
        pred = self.predict(outputs)
        return {"score": pred.score} if pred.probs is None else {"score": pred.score, "probs": pred.probs}

    def decode_estimate(self, estimate: Estimate, include_unfitted: bool = False) -> dict[str, Prediction]:
        """Every decoding of an estimate (or of a mean of estimates); default: :func:`generic_decodings`.

        ``include_unfitted`` adds fitted decodings (``calibrated``) before they are fitted.
        """
        return generic_decodings(estimate)

    def predict(self, outputs: torch.Tensor) -> Prediction:
        """The level, score and probabilities of the head's chosen decoding (``self.decode``)."""
        return self.decode_estimate(self.estimate(outputs), include_unfitted=True)[self.decode]

    def alternative_decodings(self, outputs: torch.Tensor, include_unfitted: bool = False) -> dict[str, Prediction]:
        """Every decoding of the same outputs (fitted ones once fitted, or when asked)."""
        return self.decode_estimate(self.estimate(outputs), include_unfitted)

    def calibrate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict | None:
        """Fit decoding parameters on validation outputs; returns what was fitted (or None)."""
        return self.calibrate_estimate(self.estimate(outputs), targets)

    def calibrate_estimate(self, estimate: Estimate, targets: torch.Tensor) -> dict | None:
        """Fit decoding parameters on a validation estimate (the heads with ``calibrated`` decodings)."""
        return None
