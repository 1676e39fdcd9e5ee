"""Scores of a model's estimates: calibration on valid, decoding, metrics with intervals, per split.

The same function scores a trained run (its estimates, with or without test-time augmentation) and an
ensemble (the mean of its members' estimates), so both get the same leaderboard columns: for each split
``<split>_<metric>`` with ``_lo``/``_hi`` bootstrap intervals, and ``<split>_<acc|mae|qwk>__<decoding>``
for every decoding the head offers. Every decoding's ``mae`` is the error of the levels it decides; the
continuous score is the same for every decoding, so ``score_mae`` is reported once per split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from benchkit.evaluation.metrics import bootstrap_ci, compute_metrics
from benchkit.models.head import Estimate, Head, Prediction

DECODING_METRICS = ("acc", "mae", "qwk")
SCORES_VERSION = 2
"""Bumped when a metric changes meaning (2: ``mae``, ``mape``, ``amae``, ``max_mae`` of the decided level, and
``score_mae``); scores saved under another version are computed again where their inputs are at hand."""


@dataclass
class Scores:
    """What :func:`score_estimates` gives: leaderboard columns, bootstrap details, decoded predictions."""

    row: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    predictions: dict[str, Prediction] = field(default_factory=dict)
    calibration: dict | None = None


def score_estimates(head: Head, estimates: dict[str, Estimate], targets: dict[str, np.ndarray],
                    num_classes: int, bootstrap) -> Scores:
    """Fit the head's decoding on the ``valid`` estimate (if it has one), then score every split.

    ``bootstrap``: ``n_resamples``, ``seed`` and ``ci`` of the intervals (``n_resamples: 0``: none).
    """
    scores = Scores()
    if "valid" in estimates:
        scores.calibration = head.calibrate_estimate(estimates["valid"], torch.tensor(targets["valid"]))
    for split, estimate in estimates.items():
        shown = head.decode_estimate(estimate)  # every fitted decoding, in one pass
        pred = (shown[head.decode] if head.decode in shown  # else still unfitted: its default values
                else head.decode_estimate(estimate, include_unfitted=True)[head.decode])
        scores.predictions[split] = pred
        point = {name: _point_metrics(targets[split], p, num_classes, with_probs=False)
                 for name, p in shown.items() if name != head.decode}
        point[head.decode] = _point_metrics(targets[split], pred, num_classes, with_probs=True)
        scores.row.update(_split_metrics(split, targets[split], pred, point[head.decode], num_classes, bootstrap,
                                         scores.details))
        for decoding in shown:
            scores.row.update({f"{split}_{m}__{decoding}": point[decoding][m] for m in DECODING_METRICS})
    return scores


def _point_metrics(y_true: np.ndarray, pred: Prediction, num_classes: int, with_probs: bool) -> dict:
    probs = pred.probs.numpy() if with_probs and pred.probs is not None else None
    return compute_metrics(y_true, pred.level.numpy(), pred.score.numpy(), num_classes, probs=probs)


def _split_metrics(split: str, y_true: np.ndarray, pred: Prediction, point: dict, num_classes: int, bootstrap,
                   details: dict) -> dict:
    """The chosen decoding's metrics (``point``, computed once) with their bootstrap intervals."""
    level, score = pred.level.numpy(), pred.score.numpy()
    ci = bootstrap_ci(y_true, level, score, n_resamples=bootstrap.n_resamples, seed=bootstrap.seed,
                      num_classes=num_classes, ci=bootstrap.ci, point=point) if bootstrap.n_resamples else {}
    details[split] = ci
    row = {}
    for metric, value in point.items():
        row[f"{split}_{metric}"] = value
        if metric in ci:
            row[f"{split}_{metric}_lo"] = ci[metric]["lo"]
            row[f"{split}_{metric}_hi"] = ci[metric]["hi"]
    return row
