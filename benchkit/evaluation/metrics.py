"""Ordinal grading metrics and their bootstrap confidence intervals.

Labels are integer levels ``0..K-1``; ``score`` is the model's continuous prediction on the same
level scale (for a classifier, pass the predicted level as the score). Every error metric (``mae``,
``mape``, ``amae``, ``max_mae``) is the error of the decided level, as the ordinal-regression
literature (CORAL, CORN, dlordinal) and the reference study report it; ``score_mae`` alone is the
error of the continuous score. Every label-range metric
(QWK, macro-F1) uses the full range ``0..K-1`` even when a level is absent from a split, so values
are comparable across splits and match scikit-learn called with ``labels=range(K)``.

The bootstrap draws all resamples at once and derives the metrics from batched confusion counts,
which reproduces scikit-learn on every resample (see ``bootstrap_ci``) at a fraction of the cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

CORE_METRICS = ("acc", "mae", "score_mae", "qwk", "off1", "mape", "f1")
EXTRA_METRICS = ("amae", "max_mae", "rps", "nll", "ece")
HIGHER_IS_BETTER = {"acc": True, "mae": False, "score_mae": False, "qwk": True, "off1": True, "mape": False,
                    "f1": True, "amae": False, "max_mae": False, "rps": False, "nll": False, "ece": False}

ECE_BINS = 15
NLL_EPS = 1e-12
CHUNK_BYTES = 50_000_000
_CONFUSION_METRICS = frozenset({"acc", "qwk", "f1"})


def compute_metrics(y_true, y_pred, score, num_classes: int, probs=None) -> dict[str, float]:
    """All point metrics of one set of predictions.

    ``acc, mae, qwk, off1, mape, f1, amae, max_mae`` use the predicted levels ``y_pred``; ``score_mae``
    uses the continuous ``score`` (``None`` means ``y_pred``). With ``probs`` (N, K) the probabilistic
    metrics ``rps, nll, ece`` are added.

    - ``mae``: mean ``|pred - true|`` in levels; ``score_mae``: mean ``|score - true|``.
    - ``mape``: mean ``|pred - true| / (true + 1)`` in percent, i.e. the error on the 1..K scale.
    - ``amae``: per-level MAE averaged over the levels present in ``y_true`` (an absent level has no
      MAE); ``max_mae`` is the largest of them. Unlike libraries that infer the label set from the
      data, the levels are counted against the declared range ``0..K-1``.
    """
    y_true, y_pred, score = validate_predictions(y_true, y_pred, score, num_classes)
    whole = np.arange(len(y_true))[None, :]
    values = {m: float(v[0]) for m, v in
              resample_metrics(y_true, y_pred, score, num_classes, whole, CORE_METRICS).items()}
    values.update(_per_class_mae(y_true, y_pred, num_classes))
    if probs is not None:
        probs = _check_probs(probs, len(y_true), num_classes)
        values["rps"] = ranked_probability_score(y_true, probs)
        values["nll"] = negative_log_likelihood(y_true, probs)
        values["ece"] = expected_calibration_error(y_true, probs)
    return values


def ranked_probability_score(y_true, probs) -> float:
    """Mean over samples of ``sum_k (CDF_pred_k - CDF_true_k)^2``, divided by ``K - 1`` (0 is best, 1 worst)."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    if k < 2:
        return 0.0
    cdf_pred = np.cumsum(probs, axis=1)[:, :-1]
    cdf_true = (y_true[:, None] <= np.arange(k - 1)[None, :]).astype(np.float64)
    return float(np.mean(np.sum((cdf_pred - cdf_true) ** 2, axis=1)) / (k - 1))


def negative_log_likelihood(y_true, probs, eps: float = NLL_EPS) -> float:
    """Mean ``-log p(true level)``, with probabilities clipped to ``[eps, 1]`` so it stays finite."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    p_true = probs[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(p_true, eps, 1.0))))


def expected_calibration_error(y_true, probs, n_bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence: ``sum_b |B|/N * |accuracy_b - confidence_b|``.

    The top class is ``argmax(probs)`` (not the head's decoded level); bins are the equal-width
    intervals ``(b/n_bins, (b+1)/n_bins]``, with a confidence of 0 falling in the first bin.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins = np.searchsorted(inner_edges, confidence, side="left")
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))
    return float(gap.sum() / max(count.sum(), 1))


def rank_violation_rate(cum_probs) -> float:
    """Share of samples whose threshold probabilities ``P(y > k)`` (N, K-1) ever increase with ``k``."""
    cum_probs = np.asarray(cum_probs, dtype=np.float64)
    if cum_probs.ndim != 2:
        raise ValueError(f"cum_probs must be (N, K-1), got shape {cum_probs.shape}")
    if cum_probs.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.any(np.diff(cum_probs, axis=1) > 0, axis=1)))


def bootstrap_indices(n: int, n_resamples: int = 10000, seed: int = 0) -> np.ndarray:
    """The (n_resamples, n) matrix of sample indices every bootstrap here draws."""
    return np.random.default_rng(seed).integers(0, n, (n_resamples, n))


def bootstrap_ci(y_true, y_pred, score, n_resamples: int = 10000, seed: int = 0, num_classes: int | None = None,
                 ci: float = 0.95, metrics: Sequence[str] = CORE_METRICS, indices=None,
                 point: dict | None = None) -> dict[str, dict]:
    """Percentile bootstrap intervals of the core metrics.

    Returns per metric ``{"value", "mean", "std", "lo", "hi", "n_undefined"}``: the value on the full
    data, the mean and standard deviation (ddof=1) over resamples, the ``ci`` percentile interval
    (numpy's linear interpolation),
    and how many resamples left the metric undefined. A resample where every true and predicted
    level is the same has no QWK (scikit-learn returns nan there); such resamples are left out of
    mean, std and interval.

    ``indices`` (R, n) replaces the drawn resamples (then ``n_resamples`` and ``seed`` are unused);
    ``point``: the metrics on the full data, when already computed (:func:`compute_metrics`).
    Pass ``num_classes``; without it K is taken as ``max(label) + 1`` with a warning, which
    understates K whenever the top levels are missing from the split.

    >>> y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    >>> out = bootstrap_ci(y, y, y.astype(float), n_resamples=200, num_classes=3)
    >>> out["acc"]["value"], out["acc"]["lo"], out["mae"]["hi"]
    (1.0, 1.0, 0.0)
    """
    if num_classes is None:
        num_classes = _infer_num_classes(y_true, y_pred)
    y_true, y_pred, score = validate_predictions(y_true, y_pred, score, num_classes)
    if indices is None:
        indices = bootstrap_indices(len(y_true), n_resamples, seed)
    if point is None:
        whole = resample_metrics(y_true, y_pred, score, num_classes, np.arange(len(y_true))[None, :], metrics)
        point = {m: float(whole[m][0]) for m in metrics}
    resampled = resample_metrics(y_true, y_pred, score, num_classes, indices, metrics)
    return {m: {"value": float(point[m]), **summarize_resamples(resampled[m], ci)} for m in metrics}


def summarize_resamples(values: np.ndarray, ci: float = 0.95) -> dict[str, float]:
    """nan-aware mean, std (ddof=1), percentile interval and count of undefined (nan) resamples."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci}")
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        lo = hi = mean = std = float("nan")
    else:
        lo, hi = np.percentile(defined, [50 * (1 - ci), 50 * (1 + ci)])
        mean = defined.mean()
        std = defined.std(ddof=1) if defined.size > 1 else float("nan")
    return {"mean": float(mean), "std": float(std), "lo": float(lo), "hi": float(hi),
            "n_undefined": int(values.size - defined.size)}


def resample_metrics(y_true, y_pred, score, num_classes: int, indices,
                     metrics: Sequence[str] = CORE_METRICS) -> dict[str, np.ndarray]:
    """Each core metric on each row of ``indices`` (R, m): ``{metric: array of R values}``.

    Inputs must already be arrays from ``validate_predictions``. Rows are processed in chunks
    of about ``CHUNK_BYTES`` of working memory.
    """
    unknown = [m for m in metrics if m not in CORE_METRICS]
    if unknown:
        raise ValueError(f"bootstrap supports only {', '.join(CORE_METRICS)}; got {', '.join(unknown)}")
    indices = np.asarray(indices)
    if indices.ndim != 2 or 0 in indices.shape:
        raise ValueError(f"indices must be a non-empty (n_resamples, n) matrix, got shape {indices.shape}")
    rows = max(1, CHUNK_BYTES // (8 * 6 * indices.shape[1]))
    parts = [_chunk_metrics(y_true, y_pred, score, num_classes, indices[start:start + rows], metrics)
             for start in range(0, len(indices), rows)]
    return {m: np.concatenate([part[m] for part in parts]) for m in metrics}


def validate_predictions(y_true, y_pred, score, num_classes: int):
    """``(y_true, y_pred, score)`` as int64, int64, float64 arrays; raises ValueError naming the bad entry."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    y_true = _as_levels(y_true, "y_true", num_classes)
    y_pred = _as_levels(y_pred, "y_pred", num_classes)
    score = y_pred.astype(np.float64) if score is None else np.asarray(score, dtype=np.float64).ravel()
    if not len(y_true):
        raise ValueError("no samples to score (y_true is empty)")
    if len(y_pred) != len(y_true) or len(score) != len(y_true):
        raise ValueError(f"length mismatch: y_true {len(y_true)}, y_pred {len(y_pred)}, score {len(score)}")
    return y_true, y_pred, score


def _chunk_metrics(y_true, y_pred, score, k, idx, metrics) -> dict[str, np.ndarray]:
    true, pred = y_true[idx], y_pred[idx]
    out = {}
    if _CONFUSION_METRICS.intersection(metrics):
        confusion = _batched_confusion(true, pred, k)
        out["acc"] = np.trace(confusion, axis1=1, axis2=2) / idx.shape[1]
        out["qwk"] = _quadratic_kappa(confusion)
        out["f1"] = _macro_f1(confusion)
    if "off1" in metrics:
        out["off1"] = np.mean(np.abs(pred - true) <= 1, axis=1)
    if "mae" in metrics or "mape" in metrics:
        error = np.abs(pred - true)
        out["mae"] = error.mean(axis=1)
        out["mape"] = np.mean(error / (true + 1), axis=1) * 100
    if "score_mae" in metrics:
        out["score_mae"] = np.abs(score[idx] - true).mean(axis=1)
    return {m: out[m] for m in metrics}


def _batched_confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(R, K, K) counts, rows = true level, columns = predicted level, from one ``bincount``."""
    r = true.shape[0]
    keys = (np.arange(r)[:, None] * (k * k) + true * k + pred).ravel()
    return np.bincount(keys, minlength=r * k * k).reshape(r, k, k).astype(np.float64)


def quadratic_weighted_kappa(y_true, y_pred, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights of one set of levels (nan where undefined, as scikit-learn).

    >>> quadratic_weighted_kappa([0, 1, 2], [0, 1, 2], 3)
    1.0
    """
    true = np.asarray(y_true, dtype=np.int64)[None, :]
    pred = np.asarray(y_pred, dtype=np.int64)[None, :]
    return float(_quadratic_kappa(_batched_confusion(true, pred, num_classes))[0])


def _quadratic_kappa(confusion: np.ndarray) -> np.ndarray:
    """Cohen's kappa with quadratic weights per confusion matrix, nan where it is undefined (as scikit-learn)."""
    k = confusion.shape[1]
    levels = np.arange(k, dtype=np.float64)
    weights = (levels[:, None] - levels[None, :]) ** 2
    n = confusion.sum(axis=(1, 2))
    expected = confusion.sum(axis=2)[:, :, None] * confusion.sum(axis=1)[:, None, :] / n[:, None, None]
    observed = np.einsum("rij,ij->r", confusion, weights)
    chance = np.einsum("rij,ij->r", expected, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance > 0, 1 - observed / chance, np.nan)


def _macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro F1 over all K levels; a level never true nor predicted scores 0 (``zero_division=0``)."""
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    denom = confusion.sum(axis=2) + confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return f1.mean(axis=1)


def _per_class_mae(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float]:
    error = np.abs(y_pred - y_true)
    counts = np.bincount(y_true, minlength=k)
    present = counts > 0
    per_class = np.bincount(y_true, error, minlength=k)[present] / counts[present]
    return {"amae": float(per_class.mean()), "max_mae": float(per_class.max())}


def _infer_num_classes(y_true, y_pred) -> int:
    k = int(max(np.max(y_true), np.max(y_pred))) + 1
    warnings.warn(f"num_classes not given; assuming {k} (max label + 1), which is too small if the top "
                  "levels are absent from this split", UserWarning, stacklevel=3)
    return k


def _as_levels(values, name: str, k: int) -> np.ndarray:
    array = np.asarray(values).ravel()
    if array.size and not np.all(array == np.round(array)):
        raise ValueError(f"{name} must hold integer levels; found {array[array != np.round(array)][0]!r}")
    array = array.astype(np.int64)
    bad = (array < 0) | (array >= k)
    if bad.any():
        raise ValueError(f"{name}[{int(np.argmax(bad))}] = {array[bad][0]} lies outside the levels 0..{k - 1}")
    return array


def _check_probs(probs, n: int, k: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n, k):
        raise ValueError(f"probs must have shape ({n}, {k}), got {probs.shape}")
    return probs
