"""Shared pieces of the heads: parameter initialisation and decoding from class probabilities.

Option checks live in :mod:`benchkit.models.options`; target checks, class weights and the mean loss
in the :class:`~benchkit.models.head.Head` base.
"""

from __future__ import annotations

import math

import torch

from benchkit.models.head import Estimate, Prediction


def inverse_softplus(value: float) -> float:
    """The ``x`` with ``softplus(x) == value`` (``value > 0``), used to initialise gap parameters."""
    return value + math.log(-math.expm1(-value))


def expected_level(probs: torch.Tensor) -> torch.Tensor:
    """``sum_k k * p_k``: the mean level under the class probabilities, in ``[0, K-1]``."""
    levels = torch.arange(probs.shape[-1], device=probs.device, dtype=probs.dtype)
    return (probs * levels).sum(-1)


def probs_from_cumulative(exceed: torch.Tensor) -> torch.Tensor:
    """K class probabilities from the K-1 exceedance probabilities ``P(y > k)``.

    ``P(y=0) = 1 - P(y>0)``, ``P(y=k) = P(y>k-1) - P(y>k)``, ``P(y=K-1) = P(y>K-2)``. Negative
    differences (exceedances that are not monotone) are clamped to 0 and each row renormalised,
    which leaves monotone exceedances unchanged.
    """
    ones = torch.ones_like(exceed[:, :1])
    padded = torch.cat([ones, exceed, torch.zeros_like(ones)], dim=1)
    probs = (padded[:, :-1] - padded[:, 1:]).clamp_min(0)
    return probs / probs.sum(1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)


def categorical_decodings(probs: torch.Tensor) -> dict[str, Prediction]:
    """``argmax`` and ``expected`` (rounded mean level) decodings of class probabilities; score = mean level."""
    score = expected_level(probs)
    last = probs.shape[1] - 1
    return {
        "argmax": Prediction(probs.argmax(1), score, probs),
        "expected": Prediction(torch.round(score).clamp(0, last).long(), score, probs),
    }


class CategoricalDecoding:
    """Mixin of the heads that decode K class probabilities (softmax, soft labels, cumulative link): the
    estimate is ``{"probs": ...}`` (default: the softmax of the outputs), decoded by :func:`categorical_decodings`."""

    has_probabilities = True
    decodings = ("argmax", "expected")

    def estimate(self, outputs: torch.Tensor) -> Estimate:
        return {"probs": torch.softmax(outputs.float(), dim=1)}

    def decode_estimate(self, estimate: Estimate, include_unfitted: bool = False) -> dict[str, Prediction]:
        """``argmax`` and ``expected`` levels of the class probabilities."""
        return categorical_decodings(estimate["probs"])
