"""Which configurations differ across blocks (folds, seeds)? Average ranks, the Friedman test and the Nemenyi
post hoc test with its critical difference (Demšar 2006, "Statistical comparisons of classifiers over multiple
data sets").

Each block ranks the configurations by one metric (1 = best, ties share their mean rank); a configuration's
average rank is the mean over blocks. The Friedman test (:func:`scipy.stats.friedmanchisquare`) asks whether the
configurations differ at all; the Nemenyi test (:func:`scikit_posthocs.posthoc_nemenyi_friedman`) compares every
pair, and two configurations whose average ranks lie less than the critical difference apart are not
significantly different.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import friedmanchisquare, studentized_range

from benchkit.evaluation.significance import ALPHA

MIN_CONFIGURATIONS = 3
MIN_BLOCKS = 2


@dataclass(frozen=True)
class Ranking:
    """The rank statistics of configurations (columns) over blocks (rows)."""

    mean_ranks: pd.Series
    """Average rank per configuration, best (lowest) first."""
    statistic: float
    """Friedman's chi-square."""
    p_value: float
    """Friedman's p-value: do the configurations differ at all?"""
    nemenyi: pd.DataFrame
    """Pairwise Nemenyi p-values (configuration x configuration, 1 on the diagonal)."""
    critical_difference: float
    """Average ranks further apart than this differ at ``alpha`` (Nemenyi)."""
    blocks: int
    alpha: float = ALPHA


def rank_configurations(values: pd.DataFrame, higher_is_better: bool, alpha: float = ALPHA) -> Ranking:
    """Friedman and Nemenyi over ``values``: one row per block, one column per configuration, no gaps.

    Needs at least ``MIN_CONFIGURATIONS`` columns (the Friedman test compares three or more) and
    ``MIN_BLOCKS`` rows; raises ValueError otherwise, or when a value is missing.

    >>> values = pd.DataFrame({"a": [0.9, 0.8, 0.85], "b": [0.7, 0.75, 0.6], "c": [0.5, 0.4, 0.3]})
    >>> rank_configurations(values, higher_is_better=True).mean_ranks.to_dict()
    {'a': 1.0, 'b': 2.0, 'c': 3.0}
    """
    blocks, k = values.shape
    if k < MIN_CONFIGURATIONS or blocks < MIN_BLOCKS:
        raise ValueError(f"need at least {MIN_CONFIGURATIONS} configurations and {MIN_BLOCKS} blocks, "
                         f"got {k} and {blocks}")
    if values.isna().to_numpy().any():
        raise ValueError("every configuration needs a value in every block")
    import scikit_posthocs  # imported when used: it takes seconds
    ranks = values.rank(axis=1, ascending=not higher_is_better, method="average")
    mean_ranks = ranks.mean(axis=0).sort_values(kind="stable")
    statistic, p_value = friedmanchisquare(*(values[c].to_numpy(np.float64) for c in values))
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(values.astype(np.float64))
    return Ranking(mean_ranks=mean_ranks, statistic=float(statistic), p_value=float(p_value),
                   nemenyi=nemenyi.loc[mean_ranks.index, mean_ranks.index],
                   critical_difference=critical_difference(k, blocks, alpha), blocks=blocks, alpha=alpha)


def critical_difference(k: int, blocks: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference ``q_alpha * sqrt(k (k + 1) / (6 N))`` for ``k`` configurations over ``N``
    blocks, ``q_alpha`` the studentized range quantile over ``sqrt(2)`` (Demšar's table: 2.343 for k = 3).

    >>> round(critical_difference(3, 10), 3)
    1.048
    """
    q_alpha = studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q_alpha * np.sqrt(k * (k + 1) / (6 * blocks)))
