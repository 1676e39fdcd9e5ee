"""benchkit.evaluation.significance: paired bootstrap over images, Wilcoxon over seeds, markers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from benchkit.evaluation.metrics import compute_metrics
from benchkit.evaluation.significance import (paired_bootstrap_replicates, paired_bootstrap_test, significance_marker,
                                              wilcoxon_seeds)

K = 6


def _systems(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    good = np.where(rng.random(n) < 0.9, y, np.clip(y + 1, 0, K - 1))
    bad = np.where(rng.random(n) < 0.5, y, np.clip(y + rng.choice([-2, -1, 1, 2], n), 0, K - 1))
    return y, good, bad


@pytest.mark.parametrize("metric", ["acc", "qwk", "mae", "f1"])
def test_clearly_better_system_is_significant(metric):
    y, good, bad = _systems()
    out = paired_bootstrap_test(y, good, good.astype(float), bad, bad.astype(float), metric, K, n_resamples=2000)
    want = (compute_metrics(y, good, None, K)[metric] - compute_metrics(y, bad, None, K)[metric])
    assert out["delta"] == pytest.approx(want)
    assert (out["delta"] < 0) if metric == "mae" else (out["delta"] > 0)
    assert out["p_value"] < 0.001
    assert out["lo"] <= out["delta"] <= out["hi"]
    assert not (out["lo"] <= 0 <= out["hi"])


def test_identical_systems_are_not_significant():
    y, good, _ = _systems()
    out = paired_bootstrap_test(y, good, None, good, None, "acc", K, n_resamples=500)
    assert out == {"delta": 0.0, "p_value": 1.0, "lo": 0.0, "hi": 0.0}


def test_small_difference_is_not_significant():
    y, good, _ = _systems(n=60, seed=3)
    nudged = good.copy()
    nudged[np.flatnonzero(nudged == y)[0]] = (y[np.flatnonzero(nudged == y)[0]] + 1) % K
    out = paired_bootstrap_test(y, good, None, nudged, None, "acc", K, n_resamples=2000)
    assert out["delta"] == pytest.approx(1 / 60)
    assert out["p_value"] > 0.2


def test_wilcoxon_seeds_matches_scipy_and_handles_degenerate_input():
    a = [0.71, 0.74, 0.69, 0.75, 0.72, 0.73, 0.70]
    b = [0.65, 0.70, 0.66, 0.69, 0.70, 0.71, 0.66]
    assert wilcoxon_seeds(a, b) == pytest.approx(wilcoxon(np.subtract(a, b)).pvalue)
    assert wilcoxon_seeds(a, b) < 0.05
    assert math.isnan(wilcoxon_seeds(a, a))
    assert math.isnan(wilcoxon_seeds([0.5, 0.6, float("nan")], [0.5, 0.5, 0.4]))
    with pytest.raises(ValueError, match="pair up"):
        wilcoxon_seeds([1, 2, 3], [1, 2])


@pytest.mark.parametrize("p, mark", [(0.0004, "***"), (0.001, "**"), (0.009, "**"), (0.01, "*"),
                                     (0.049, "*"), (0.05, "ns"), (0.8, "ns"), (float("nan"), "ns")])
def test_significance_marker(p, mark):
    assert significance_marker(p) == mark


def test_seeds_on_the_same_images_share_one_draw():
    """Two seeds that erred alike on the same images carry no more evidence than one: the p-value and the interval
    stay those of a single replicate. Independent draws per seed would narrow them (the image-to-image variation
    averaged away)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, K, 120)
    a = np.clip(y + rng.integers(-1, 2, 120), 0, K - 1)
    b = np.clip(y + rng.integers(-2, 3, 120), 0, K - 1)
    one = paired_bootstrap_replicates([(y, a, None)], [(y, b, None)], "mae", K, n_resamples=500)
    same = paired_bootstrap_replicates([(y, a, None)] * 2, [(y, b, None)] * 2, "mae", K, n_resamples=500,
                                       test_sets=["test", "test"])
    assert same == pytest.approx(one)
    apart = paired_bootstrap_replicates([(y, a, None)] * 2, [(y, b, None)] * 2, "mae", K, n_resamples=500,
                                        test_sets=["fold0", "fold1"])
    assert apart["delta"] == pytest.approx(one["delta"])
    assert apart["hi"] - apart["lo"] < 0.85 * (one["hi"] - one["lo"])
