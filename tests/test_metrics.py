"""benchkit.evaluation.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (accuracy_score, cohen_kappa_score, f1_score, mean_absolute_error,
                             mean_absolute_percentage_error)

from benchkit.evaluation import metrics as M
from benchkit.evaluation.metrics import (CORE_METRICS, EXTRA_METRICS, HIGHER_IS_BETTER, bootstrap_ci, bootstrap_indices,
                              compute_metrics, expected_calibration_error, negative_log_likelihood,
                              ranked_probability_score, rank_violation_rate)

K = 6


def _predictions(n: int, seed: int, k: int = K):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.clip(y + rng.choice([-2, -1, 0, 0, 0, 1], n), 0, k - 1)
    score = np.clip(pred + rng.normal(0, 0.4, n), 0, k - 1)
    return y, pred, score


def _sklearn_core(y, pred, score, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        qwk = cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(k)))
    return {"acc": accuracy_score(y, pred),
            "mae": mean_absolute_error(y, pred),
            "score_mae": mean_absolute_error(y, score),
            "qwk": qwk,
            "off1": float(np.mean(np.abs(pred - y) <= 1)),
            "mape": mean_absolute_percentage_error(y + 1, pred + 1) * 100,
            "f1": f1_score(y, pred, average="macro", labels=list(range(k)), zero_division=0)}


def test_metric_names_and_directions():
    assert set(HIGHER_IS_BETTER) == set(CORE_METRICS) | set(EXTRA_METRICS)
    assert [m for m in HIGHER_IS_BETTER if HIGHER_IS_BETTER[m]] == ["acc", "qwk", "off1", "f1"]


def test_compute_metrics_gives_exactly_the_named_metrics():
    y, pred, score = _predictions(30, 6)
    probs = np.random.default_rng(1).dirichlet(np.ones(K), 30)
    assert set(compute_metrics(y, pred, score, K, probs=probs)) == set(HIGHER_IS_BETTER)


def test_mae_is_the_error_of_the_level_and_score_mae_of_the_score():
    y = np.array([0, 1, 2, 3])
    pred = np.array([0, 2, 2, 1])
    score = np.array([0.4, 1.6, 2.0, 1.4])
    got = compute_metrics(y, pred, score, 4)
    assert got["mae"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert got["score_mae"] == pytest.approx((0.4 + 0.6 + 0 + 1.6) / 4)
    assert got["mape"] == pytest.approx((0 + 1 / 2 + 0 + 2 / 4) / 4 * 100)
    assert got["amae"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert got["max_mae"] == pytest.approx(2.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_metrics_match_sklearn(seed):
    y, pred, score = _predictions(80, seed)
    got = compute_metrics(y, pred, score, K)
    want = _sklearn_core(y, pred, score, K)
    for name in CORE_METRICS:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_mape_is_percent_error_on_one_based_scale():
    got = compute_metrics([0, 3], [1, 2], [0.0, 3.0], 4)
    assert got["mape"] == pytest.approx((1 / 1 + 1 / 4) / 2 * 100)
    assert got["mae"] == pytest.approx(1.0)
    assert got["score_mae"] == 0.0


def test_absent_level_uses_full_label_range():
    y = np.array([0, 0, 1, 1, 3, 3, 4, 4, 5, 5])
    pred = np.array([0, 1, 1, 1, 3, 4, 4, 3, 5, 4])
    got = compute_metrics(y, pred, pred.astype(float), K)
    full_qwk = cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(K)))
    inferred_qwk = cohen_kappa_score(y, pred, weights="quadratic")
    full_f1 = f1_score(y, pred, average="macro", labels=list(range(K)), zero_division=0)
    inferred_f1 = f1_score(y, pred, average="macro", zero_division=0)
    assert got["qwk"] == pytest.approx(full_qwk, abs=1e-12)
    assert got["f1"] == pytest.approx(full_f1, abs=1e-12)
    assert abs(full_qwk - inferred_qwk) > 1e-3
    assert abs(full_f1 - inferred_f1) > 1e-3


def test_per_class_mae_over_present_levels():
    y = np.array([0, 0, 2, 2, 2])
    pred = np.array([1, 2, 2, 1, 0])
    got = compute_metrics(y, pred, pred + 0.3, 4)
    assert got["amae"] == pytest.approx(((1 + 2) / 2 + (0 + 1 + 2) / 3) / 2)
    assert got["max_mae"] == pytest.approx(1.5)


def test_ranked_probability_score_by_hand():
    probs = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    assert ranked_probability_score([1, 0], probs) == pytest.approx(((0.2 ** 2 + 0.3 ** 2) / 2 + 0) / 2)
    assert ranked_probability_score([2], [[1.0, 0.0, 0.0]]) == pytest.approx(1.0)


def test_negative_log_likelihood_by_hand_and_clipped():
    assert negative_log_likelihood([1, 0], [[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]) == pytest.approx(-math.log(0.5) / 2)
    assert negative_log_likelihood([2], [[1.0, 0.0, 0.0]]) == pytest.approx(-math.log(M.NLL_EPS))


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.25, 0.55, 0.2], [0.1, 0.2, 0.7]])
    y = np.array([0, 1, 1, 0])
    # bins: two samples at 0.9 (half right), one at 0.55 (right), one at 0.7 (wrong)
    want = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.55) + 1 / 4 * abs(0 - 0.7)
    assert expected_calibration_error(y, probs) == pytest.approx(want)
    assert expected_calibration_error([0, 2], np.eye(3)[[0, 2]]) == 0.0


def test_probabilistic_metrics_in_compute_metrics():
    y, pred, score = _predictions(30, 5)
    probs = np.random.default_rng(0).dirichlet(np.ones(K), 30)
    got = compute_metrics(y, pred, score, K, probs=probs)
    assert got["rps"] == pytest.approx(ranked_probability_score(y, probs))
    assert got["nll"] == pytest.approx(negative_log_likelihood(y, probs))
    assert got["ece"] == pytest.approx(expected_calibration_error(y, probs))
    assert "rps" not in compute_metrics(y, pred, score, K)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(y, pred, score, K, probs=probs[:, :-1])


def test_rank_violation_rate():
    cum = np.array([[0.9, 0.5, 0.1], [0.9, 0.95, 0.1], [0.5, 0.5, 0.5], [0.2, 0.1, 0.3]])
    assert rank_violation_rate(cum) == pytest.approx(0.5)
    assert rank_violation_rate(cum[[0, 2]]) == 0.0


def test_bad_inputs_name_the_entry():
    with pytest.raises(ValueError, match=r"y_pred\[2\] = 6"):
        compute_metrics([0, 1, 2], [0, 1, 6], None, K)
    with pytest.raises(ValueError, match="length mismatch"):
        compute_metrics([0, 1, 2], [0, 1], None, K)
    with pytest.raises(ValueError, match="integer levels"):
        compute_metrics([0, 1.5], [0, 1], None, K)


def _sklearn_loop(y, pred, score, indices, k):
    rows = [_sklearn_core(y[i], pred[i], score[i], k) for i in indices]
    return {m: np.array([row[m] for row in rows]) for m in CORE_METRICS}


def test_bootstrap_matches_sklearn_on_fixed_indices():
    y, pred, score = _predictions(60, 3)
    indices = bootstrap_indices(60, 200, seed=7)
    indices[:3] = np.flatnonzero(y == y[0])[0]  # single-level resamples: QWK undefined
    want = _sklearn_loop(y, pred, score, indices, K)
    got = bootstrap_ci(y, pred, score, num_classes=K, indices=indices)
    point = _sklearn_core(y, pred, score, K)
    resampled = M.resample_metrics(y, pred, score, K, indices)
    for name in CORE_METRICS:
        np.testing.assert_allclose(resampled[name], want[name], rtol=0, atol=1e-10, equal_nan=True)
        values = want[name][~np.isnan(want[name])]
        assert got[name]["value"] == pytest.approx(point[name], abs=1e-10)
        assert got[name]["mean"] == pytest.approx(values.mean(), abs=1e-10)
        assert got[name]["std"] == pytest.approx(values.std(ddof=1), abs=1e-10)
        assert got[name]["lo"] == pytest.approx(np.percentile(values, 2.5), abs=1e-10)
        assert got[name]["hi"] == pytest.approx(np.percentile(values, 97.5), abs=1e-10)
    assert np.isnan(want["qwk"][:3]).all()
    assert got["qwk"]["n_undefined"] == 3
    assert got["acc"]["n_undefined"] == 0


def test_bootstrap_draws_documented_indices_and_is_chunk_independent(monkeypatch):
    y, pred, score = _predictions(40, 4)
    drawn = bootstrap_ci(y, pred, score, n_resamples=300, seed=11, num_classes=K)
    given = bootstrap_ci(y, pred, score, num_classes=K,
                         indices=np.random.default_rng(11).integers(0, 40, (300, 40)))
    monkeypatch.setattr(M, "CHUNK_BYTES", 8 * 6 * 40 * 7)
    chunked = bootstrap_ci(y, pred, score, n_resamples=300, seed=11, num_classes=K)
    assert drawn == given
    for name in CORE_METRICS:
        for key in ("mean", "std", "lo", "hi"):
            assert chunked[name][key] == pytest.approx(drawn[name][key], abs=1e-12)


def test_interval_contains_point_value_and_matches_compute_metrics():
    y, pred, score = _predictions(133, 8)
    out = bootstrap_ci(y, pred, score, n_resamples=1000, num_classes=K)
    point = compute_metrics(y, pred, score, K)
    for name in CORE_METRICS:
        assert out[name]["value"] == pytest.approx(point[name], abs=1e-12)
        assert out[name]["lo"] < out[name]["value"] < out[name]["hi"]
        assert 0 < out[name]["std"] < (out[name]["hi"] - out[name]["lo"])


def test_bootstrap_subset_of_metrics_and_unknown_metric():
    y, pred, score = _predictions(20, 9)
    assert set(bootstrap_ci(y, pred, score, n_resamples=50, num_classes=K, metrics=("mae",))) == {"mae"}
    with pytest.raises(ValueError, match="rps"):
        bootstrap_ci(y, pred, score, n_resamples=50, num_classes=K, metrics=("rps",))


def test_bootstrap_without_num_classes_warns():
    y = np.array([0, 1, 2, 1, 0, 2])
    with pytest.warns(UserWarning, match="assuming 3"):
        out = bootstrap_ci(y, y, None, n_resamples=20)
    assert out["acc"]["value"] == 1.0
