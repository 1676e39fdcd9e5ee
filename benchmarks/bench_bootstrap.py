"""Bootstrap: ``benchkit.evaluation.metrics.bootstrap_ci`` against the reference study's per-resample scikit-learn loop.

Both use the same resample index matrix (n=133 like the valid split, 10,000 resamples) and the same
metrics (accuracy, the level MAE, the score MAE, MAPE on the 1..K scale, quadratic kappa); the figure is the
speed-up, and the largest difference of point value, mean, std and interval ends must be float rounding.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, cohen_kappa_score, mean_absolute_error,
                             mean_absolute_percentage_error)

from benchkit.evaluation.metrics import bootstrap_ci, bootstrap_indices, summarize_resamples

from _bench import Figure, timed

METRICS = ("acc", "mae", "score_mae", "mape", "qwk")
K = 6
SEED = 27


def _predictions(n: int):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, K, n)
    score = np.clip(y_true + rng.normal(0, 0.6, n), 0, K - 1)
    return y_true, np.rint(score).astype(np.int64), score


def sklearn_loop(y_true, y_pred, score, indices) -> dict[str, np.ndarray]:
    """The reference study's loop: one scikit-learn call per metric and resample."""
    out = {m: np.empty(len(indices)) for m in METRICS}
    labels = list(range(K))
    for r, idx in enumerate(indices):
        t, p, s = y_true[idx], y_pred[idx], score[idx]
        out["acc"][r] = accuracy_score(t, p)
        out["mae"][r] = mean_absolute_error(t, p)
        out["score_mae"][r] = mean_absolute_error(t, s)
        out["mape"][r] = mean_absolute_percentage_error(t + 1, p + 1) * 100
        out["qwk"][r] = cohen_kappa_score(t, p, weights="quadratic", labels=labels)
    return out


def bootstrap_speed(n: int = 133, resamples: int = 10_000, repeats: int = 5) -> Figure:
    y_true, y_pred, score = _predictions(n)
    indices = bootstrap_indices(n, resamples, SEED)
    loop_s, loop = timed(lambda: sklearn_loop(y_true, y_pred, score, indices))
    fast_s = min(timed(lambda: bootstrap_ci(y_true, y_pred, score, n_resamples=resamples, seed=SEED,
                                            num_classes=K, metrics=METRICS))[0] for _ in range(repeats))
    fast = bootstrap_ci(y_true, y_pred, score, n_resamples=resamples, seed=SEED, num_classes=K,
                        metrics=METRICS)
    worst = 0.0
    for m in METRICS:
        reference = summarize_resamples(loop[m])
        for key in ("mean", "std", "lo", "hi"):
            worst = max(worst, abs(fast[m][key] - reference[key]))
    whole = sklearn_loop(y_true, y_pred, score, np.arange(n)[None, :])
    worst = max(worst, *(abs(fast[m]["value"] - whole[m][0]) for m in METRICS))
    speedup = loop_s / fast_s
    same = worst <= 1e-9
    return Figure("bootstrap_ci_vs_sklearn_loop_speedup", speedup, ">= 100x, same numbers",
                  speedup >= 100 and same, "x",
                  {"n": n, "resamples": resamples, "metrics": list(METRICS), "sklearn_loop_seconds": loop_s,
                   "bootstrap_ci_seconds": fast_s, "max_abs_difference": worst},
                  note=f"{loop_s:.1f} s vs {1000 * fast_s:.1f} ms for n={n}, {resamples} resamples; "
                       f"largest difference {worst:.1g}")
