"""Decodings fitted on validation outputs: monotone cut points on a score, or one probability threshold.

Both are small modules holding their fitted values in buffers, so a calibrated decoding travels
with the head's state dict. Fitting maximises quadratic weighted kappa (``qwk``) or minimises the
mean absolute error of the levels (``mae``) on the validation outputs it is given.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchkit.models.head import Estimate, Prediction
from benchkit.evaluation.metrics import quadratic_weighted_kappa
from benchkit.models.options import check_choice, check_number

from ._common import probs_from_cumulative

CALIBRATE_METRICS = ("qwk", "mae")
_MAX_CANDIDATES = 256
_MAX_SWEEPS = 20


def decoding_quality(metric: str, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Higher is better: QWK (:func:`benchkit.evaluation.metrics.quadratic_weighted_kappa`, 0 where it is
    undefined: both raters use a single class), or minus the mean absolute level error."""
    if metric == "qwk":
        kappa = quadratic_weighted_kappa(y_true, y_pred, num_classes)
        return 0.0 if math.isnan(kappa) else kappa
    return -float(np.abs(np.asarray(y_true) - np.asarray(y_pred)).mean())


def fit_cut_points(scores: np.ndarray, targets: np.ndarray, num_classes: int, metric: str = "qwk",
                   initial: np.ndarray | None = None) -> np.ndarray:
    """K-1 increasing cut points on ``scores`` maximising ``metric`` of ``searchsorted(cuts, score)``.

    Coordinate ascent: each cut in turn moves to the best midpoint between neighbouring validation
    scores that keeps it strictly between its neighbours; sweeps repeat until nothing improves.
    Starts from ``initial`` (default: the rounding cuts ``k + 0.5``), so it never ends worse than that.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    cuts = (np.arange(num_classes - 1) + 0.5) if initial is None else np.array(initial, dtype=np.float64)
    best = decoding_quality(metric, targets, np.searchsorted(cuts, scores), num_classes)
    unique = np.unique(scores)
    for _ in range(_MAX_SWEEPS):
        improved = False
        for j in range(num_classes - 1):
            low = cuts[j - 1] if j > 0 else min(unique[0] - 1.0, cuts[j] - 1.0)
            high = cuts[j + 1] if j < num_classes - 2 else max(unique[-1] + 1.0, cuts[j] + 1.0)
            inside = unique[(unique > low) & (unique < high)]
            if len(inside) > _MAX_CANDIDATES:
                inside = np.quantile(inside, np.linspace(0, 1, _MAX_CANDIDATES))
            edges = np.concatenate([[low], inside, [high]])
            for candidate in (edges[:-1] + edges[1:]) / 2:
                if not low < candidate < high:
                    continue
                trial = cuts.copy()
                trial[j] = candidate
                quality = decoding_quality(metric, targets, np.searchsorted(trial, scores), num_classes)
                if quality > best + 1e-12:
                    best, cuts, improved = quality, trial, True
        if not improved:
            break
    return cuts


def fit_threshold(exceed: np.ndarray, targets: np.ndarray, num_classes: int, metric: str = "qwk",
                  initial: float = 0.5) -> float:
    """One threshold ``t`` maximising ``metric`` of ``level = #{k : P(y > k) > t}``.

    Candidates are midpoints between the observed probabilities; ties keep ``t`` nearest ``initial``.
    """
    exceed = np.asarray(exceed, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    values = np.unique(np.concatenate([[0.0, 1.0], exceed.ravel()]))
    if len(values) > _MAX_CANDIDATES:
        values = np.quantile(values, np.linspace(0, 1, _MAX_CANDIDATES))
    candidates = np.concatenate([[initial], (values[:-1] + values[1:]) / 2])
    candidates = candidates[(candidates > 0) & (candidates < 1)]
    best_t, best = initial, None
    for t in candidates:
        quality = decoding_quality(metric, targets, (exceed > t).sum(1), num_classes)
        closer = best is not None and quality == best and abs(t - initial) < abs(best_t - initial)
        if best is None or quality > best + 1e-12 or closer:
            best_t, best = float(t), quality
    return best_t


class CutPointDecoder(nn.Module):
    """Maps a score on ``[0, K-1]`` to a level with K-1 increasing cut points (default ``k + 0.5``)."""

    def __init__(self, num_classes: int, metric: str = "qwk"):
        super().__init__()
        self.num_classes = num_classes
        self.metric = metric
        self.register_buffer("cut_points", torch.arange(num_classes - 1, dtype=torch.float32) + 0.5)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def levels(self, scores: torch.Tensor) -> torch.Tensor:
        cuts = self.cut_points.to(device=scores.device, dtype=scores.dtype)
        return torch.searchsorted(cuts, scores.contiguous()).clamp(0, self.num_classes - 1)

    def fit(self, scores: torch.Tensor, targets: torch.Tensor) -> dict:
        """Fit the cut points on validation scores; returns them with the metric before and after."""
        s, y = scores.detach().float().cpu().numpy(), targets.detach().long().cpu().numpy()
        rounding = np.arange(self.num_classes - 1) + 0.5
        before = decoding_quality(self.metric, y, np.searchsorted(rounding, s), self.num_classes)
        cuts = fit_cut_points(s, y, self.num_classes, self.metric)
        after = decoding_quality(self.metric, y, np.searchsorted(cuts, s), self.num_classes)
        self.cut_points.copy_(torch.as_tensor(cuts, dtype=torch.float32))
        self.fitted.fill_(True)
        return {"cut_points": [round(float(c), 6) for c in cuts], **_report(self.metric, before, after)}


class ThresholdDecoder(nn.Module):
    """Maps exceedance probabilities ``P(y > k)`` to ``#{k : P(y > k) > threshold}``.

    Validates the threshold-head options ``threshold`` (in (0, 1)) and ``calibrate_metric``.
    """

    def __init__(self, num_classes: int, threshold: float = 0.5, metric: str = "qwk"):
        super().__init__()
        threshold = check_number("threshold", threshold, low=0.0, high=1.0, low_open=True, high_open=True)
        metric = check_choice("calibrate_metric", metric, CALIBRATE_METRICS)
        self.num_classes = num_classes
        self.default_threshold = threshold
        self.metric = metric
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def levels(self, exceed: torch.Tensor, threshold: float | torch.Tensor | None = None) -> torch.Tensor:
        t = self.default_threshold if threshold is None else threshold
        t = torch.as_tensor(t, device=exceed.device, dtype=exceed.dtype)
        return (exceed > t).sum(1)

    def fit(self, exceed: torch.Tensor, targets: torch.Tensor) -> dict:
        """Fit the threshold on validation exceedance probabilities; returns it with the metric before and after."""
        p, y = exceed.detach().float().cpu().numpy(), targets.detach().long().cpu().numpy()
        before = decoding_quality(self.metric, y, (p > self.default_threshold).sum(1), self.num_classes)
        t = fit_threshold(p, y, self.num_classes, self.metric, self.default_threshold)
        after = decoding_quality(self.metric, y, (p > t).sum(1), self.num_classes)
        self.threshold.fill_(t)
        self.fitted.fill_(True)
        return {"threshold": round(t, 6), **_report(self.metric, before, after)}


def threshold_decodings(exceed: torch.Tensor, decoder: ThresholdDecoder,
                        include_unfitted: bool) -> dict[str, Prediction]:
    """Predictions from exceedance probabilities ``P(y > k)`` at the default and the fitted threshold."""
    probs = probs_from_cumulative(exceed)
    score = exceed.sum(1)
    decoded = {"threshold": Prediction(decoder.levels(exceed), score, probs)}
    if include_unfitted or bool(decoder.fitted):
        decoded["calibrated"] = Prediction(decoder.levels(exceed, decoder.threshold), score, probs)
    return decoded


def _report(metric: str, before: float, after: float) -> dict:
    sign = 1.0 if metric == "qwk" else -1.0
    return {"metric": metric, "valid_before": sign * before, "valid_after": sign * after}


class ExceedanceDecoding:
    """Mixin of the heads that decode exceedance probabilities ``P(y > k)`` (CORAL, CORN): the estimate is
    ``{"exceedance": self.exceedance(outputs)}``, decoded at the default threshold and at the one fitted on the
    validation estimate (``calibrated``). The head sets ``self.decoder`` (a :class:`ThresholdDecoder`)."""

    has_probabilities = True
    decodings = ("threshold", "calibrated")

    def estimate(self, outputs: torch.Tensor) -> Estimate:
        return {"exceedance": self.exceedance(outputs)}

    def decode_estimate(self, estimate: Estimate, include_unfitted: bool = False) -> dict[str, Prediction]:
        """``threshold`` and, once calibrated (or when asked), ``calibrated`` levels of ``P(y > k)``."""
        return threshold_decodings(estimate["exceedance"], self.decoder, include_unfitted)

    def calibrate_estimate(self, estimate: Estimate, targets: torch.Tensor) -> dict:
        """Fit the threshold of the ``calibrated`` decoding on validation exceedance probabilities."""
        return {"decoding": "calibrated", **self.decoder.fit(estimate["exceedance"], targets)}
