"""Is configuration A really better than B? Paired tests over test images and over seeds, and the Holm
correction for a family of such tests."""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.stats import wilcoxon

ALPHA = 0.05

from benchkit.evaluation.metrics import bootstrap_indices, resample_metrics, summarize_resamples, validate_predictions


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, std, lo, hi)``: the mean of ``values`` (e.g. one metric over seeds), its sample standard
    deviation and the ``level`` t-interval of the mean (nan where one value cannot give them).

    >>> t_interval(np.array([1.0, 2.0, 3.0]))[:2]
    (2.0, 1.0)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (np.nan,) * 4
    mean = float(values.mean())
    if values.size == 1:
        return mean, np.nan, np.nan, np.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1)) * std / np.sqrt(values.size)
    return mean, std, mean - half, mean + half


def paired_bootstrap_test(y_true, pred_a, score_a, pred_b, score_b, metric: str, num_classes: int,
                          n_resamples: int = 10000, seed: int = 0, ci: float = 0.95) -> dict[str, float]:
    """Bootstrap test of ``metric(A) - metric(B)`` on the same test images.

    Both systems are scored on the same resampled images, so the image-to-image variation cancels.
    Returns ``delta`` (A minus B on the full data; whether positive is good depends on
    ``HIGHER_IS_BETTER``), ``lo``/``hi`` (percentile interval of the resampled deltas) and a
    two-sided ``p_value``: the share of resampled deltas, centred on ``delta``, at least as far from
    zero as ``delta`` itself, with add-one smoothing (so never exactly 0). Resamples where the
    metric is undefined for either system (a single-level QWK) are left out.
    """
    return paired_bootstrap_replicates([(y_true, pred_a, score_a)], [(y_true, pred_b, score_b)], metric,
                                       num_classes, n_resamples, seed, ci)


def paired_bootstrap_replicates(replicates_a, replicates_b, metric: str, num_classes: int,
                                n_resamples: int = 10000, seed: int = 0, ci: float = 0.95,
                                test_sets: list | None = None) -> dict[str, float]:
    """The paired bootstrap over several replicates (seeds, folds): ``[(y_true, pred, score), ...]``.

    Replicate ``i`` of A and of B must cover the same images. Each resample draws images (the same
    draw for A and B) and compares the replicate-averaged metric, so the test speaks about the
    configurations, not one lucky seed. ``test_sets`` names each replicate's test images: replicates
    on the same images (seeds of one split) share one draw, ``bootstrap_indices(n, R, seed + k)`` for
    the k-th distinct test set, since drawing them independently would average the image-to-image
    variation away and understate the uncertainty; default: every replicate its own set (folds).
    """
    if len(replicates_a) != len(replicates_b) or not replicates_a:
        raise ValueError(f"need matching, non-empty replicates, got {len(replicates_a)} and {len(replicates_b)}")
    test_sets = list(range(len(replicates_a))) if test_sets is None else list(test_sets)
    draw_of = {key: k for k, key in enumerate(dict.fromkeys(test_sets))}
    full_a, full_b, boot_a, boot_b = [], [], [], []
    for i, ((y_a, pred_a, score_a), (y_b, pred_b, score_b)) in enumerate(zip(replicates_a, replicates_b)):
        y_true, pred_a, score_a = validate_predictions(y_a, pred_a, score_a, num_classes)
        y_true_b, pred_b, score_b = validate_predictions(y_b, pred_b, score_b, num_classes)
        if not np.array_equal(y_true, y_true_b):
            raise ValueError(f"replicate {i}: A and B were not scored on the same images")
        whole = np.arange(len(y_true))[None, :]
        indices = bootstrap_indices(len(y_true), n_resamples, seed + draw_of[test_sets[i]])
        full_a.append(_metric(y_true, pred_a, score_a, num_classes, whole, metric)[0])
        full_b.append(_metric(y_true, pred_b, score_b, num_classes, whole, metric)[0])
        boot_a.append(_metric(y_true, pred_a, score_a, num_classes, indices, metric))
        boot_b.append(_metric(y_true, pred_b, score_b, num_classes, indices, metric))
    delta = float(np.mean(full_a) - np.mean(full_b))
    deltas = np.mean(boot_a, axis=0) - np.mean(boot_b, axis=0)
    summary = summarize_resamples(deltas, ci)
    defined = deltas[~np.isnan(deltas)]
    extreme = np.count_nonzero(np.abs(defined - delta) >= abs(delta) - 1e-12)
    p_value = (extreme + 1) / (defined.size + 1) if np.isfinite(delta) else float("nan")
    return {"delta": delta, "p_value": float(p_value), "lo": summary["lo"], "hi": summary["hi"]}


def wilcoxon_seeds(values_a, values_b) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired per-seed metric values of A and B.

    Pairs with a nan are dropped and zero differences are discarded (``zero_method="wilcox"``);
    with fewer than 2 non-zero differences there is nothing to test and nan is returned. Note the
    exact test cannot go below ``2 / 2**n``: 5 seeds never reach p < 0.05, 6 seeds just can.
    """
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"values_a and values_b must pair up, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = a[keep] - b[keep]
    if np.count_nonzero(diff) < 2:
        return float("nan")
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted twins of a family of p-values (``multipletests(method="holm")``); nan stays nan and
    is left out of the family (a comparison that could not be made is not a test).

    >>> holm([0.01, 0.04, 0.03, float("nan")]).round(2).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    from statsmodels.stats.multitest import multipletests  # imported when used: it takes seconds
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    tested = np.isfinite(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], alpha=ALPHA, method="holm")[1]
    return adjusted


def significance_marker(p: float) -> str:
    """``***`` below 0.001, ``**`` below 0.01, ``*`` below 0.05, else ``ns`` (also for nan)."""
    if p is None or not np.isfinite(p):
        return "ns"
    if p < 0.001:
        return "***"
    if p < 0.01:
        return "**"
    if p < 0.05:
        return "*"
    return "ns"


def _metric(y_true, pred, score, num_classes, indices, metric) -> np.ndarray:
    return resample_metrics(y_true, pred, score, num_classes, indices, (metric,))[metric]
