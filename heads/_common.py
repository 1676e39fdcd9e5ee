"""Shared pieces of the heads: option checks, class-weighted averaging and probability decoding.

Heads are built from YAML options, so every check raises ``ValueError`` with the option's name,
what it accepts and what it got; ``benchkit.models.grader.create_head`` prefixes the head's name.
"""

from __future__ import annotations

import math

import torch

from benchkit.models.head import Prediction


def check_choice(option: str, value, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"option {option!r} must be one of {', '.join(repr(c) for c in choices)}, "
                         f"got {value!r}")
    return value


def check_number(option: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float inside the given bounds, else a ValueError naming the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"option {option!r} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"option {option!r} must lie in {left}{lo}, {hi}{right}, got {value!r}")
    return float(value)


def check_dropout(value) -> float:
    return check_number("dropout", value, low=0.0, high=1.0, high_open=True)


def inverse_softplus(value: float) -> float:
    """The ``x`` with ``softplus(x) == value`` (``value > 0``), used to initialise gap parameters."""
    return value + math.log(-math.expm1(-value))


def weighted_mean(per_sample: torch.Tensor, targets: torch.Tensor,
                  class_weights: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Mean of per-sample losses, each weighted by its true class' weight (normalised by the weights)."""
    weights = sample_weights(targets, class_weights, num_classes, per_sample.device)
    if weights is None:
        return per_sample.mean()
    return (weights * per_sample).sum() / weights.sum().clamp_min(torch.finfo(torch.float32).tiny)


def sample_weights(targets: torch.Tensor, class_weights: torch.Tensor | None, num_classes: int,
                   device: torch.device) -> torch.Tensor | None:
    """Each sample's class weight as a float32 (B,) tensor, or None without class weights."""
    if class_weights is None:
        return None
    class_weights = torch.as_tensor(class_weights)
    if class_weights.numel() != num_classes:
        raise ValueError(f"class_weights has {class_weights.numel()} values for {num_classes} classes")
    return class_weights.to(device=device, dtype=torch.float32).reshape(-1)[targets]


def check_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Targets as a long (B,) tensor; on CPU, levels outside ``0..K-1`` are a ValueError.

    Tensors on an accelerator are not inspected, to keep the training step free of host syncs.
    """
    targets = targets.reshape(-1).long()
    if targets.device.type == "cpu" and targets.numel():
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"targets must be levels 0..{num_classes - 1}, got values in [{low}, {high}]")
    return targets


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
