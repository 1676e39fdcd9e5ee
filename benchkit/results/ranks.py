"""The rank view of a comparison with several blocks (folds and/or seeds): average ranks, Friedman, Nemenyi.

A block is one (fold, seed) of one split strategy: the configurations' runs of that block are ranked by the
sorting metric (:func:`benchkit.evaluation.ranking.rank_configurations`). Only runs count (an ensemble averages
blocks), and only blocks in which every configuration finished (the Friedman test needs complete blocks); a
configuration missing from most blocks is left out rather than emptying the table. Split strategies
(``data.split`` in a grid) are ranked apart, since their blocks are scored on other images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchkit.evaluation.metrics import HIGHER_IS_BETTER
from benchkit.evaluation.ranking import MIN_BLOCKS, MIN_CONFIGURATIONS, Ranking, rank_configurations
from benchkit.results.ensembles import is_ensemble
from benchkit.results.leaderboard import metric_of

RANK_COLUMNS = ("split", "config", "mean_rank", "p_nemenyi_vs_top", "configs", "blocks", "friedman_chi2",
                "friedman_p", "critical_difference")


def rankings(frame: pd.DataFrame, labels: pd.Series, metric_column: str) -> dict[str, Ranking]:
    """Per split strategy with at least three configurations over at least two complete blocks, its ranking.

    ``frame``: leaderboard rows (finished runs are used); ``labels``: the configuration label of each row.
    """
    if frame.empty or metric_column not in frame or "status" not in frame:
        return {}
    runs = frame[(frame["status"] == "ok") & ~frame.apply(is_ensemble, axis=1)]
    higher = HIGHER_IS_BETTER.get(metric_of(metric_column), True)
    found = {}
    strategy = runs["split"].fillna("official") if "split" in runs else pd.Series("official", index=runs.index)
    for split, group in runs.groupby(strategy, sort=False):
        values = block_values(group, labels[group.index], metric_column)
        if values.shape[1] >= MIN_CONFIGURATIONS and len(values) >= MIN_BLOCKS:
            found[str(split)] = rank_configurations(values, higher)
    return found


def block_values(runs: pd.DataFrame, labels: pd.Series, metric_column: str) -> pd.DataFrame:
    """Rows = complete blocks (fold, seed), columns = configurations, cells = ``metric_column``."""
    blocks = pd.DataFrame({"fold": runs.get("fold", pd.Series(np.nan, index=runs.index)).fillna(-1),
                           "seed": runs["seed"].fillna(-1), "config": labels,
                           "value": pd.to_numeric(runs[metric_column], errors="coerce")})
    table = blocks.pivot_table(index=["fold", "seed"], columns="config", values="value", aggfunc="mean", sort=False)
    table = table.loc[:, table.notna().sum() * 2 > len(table)]  # in most blocks
    return table.dropna(axis=0, how="any")


def rank_table(found: dict[str, Ranking]) -> pd.DataFrame:
    """One row per ranked configuration: its average rank (1 = best), the Nemenyi p-value against the top-ranked
    configuration, and its strategy's Friedman statistic, p-value and critical difference."""
    rows = []
    for split, ranking in found.items():
        top = ranking.mean_ranks.index[0]
        for config, mean_rank in ranking.mean_ranks.items():
            rows.append({"split": split, "config": config, "mean_rank": float(mean_rank),
                         "p_nemenyi_vs_top": float(ranking.nemenyi.at[config, top]),
                         "configs": len(ranking.mean_ranks), "blocks": ranking.blocks,
                         "friedman_chi2": ranking.statistic, "friedman_p": ranking.p_value,
                         "critical_difference": ranking.critical_difference})
    return pd.DataFrame(rows, columns=list(RANK_COLUMNS))
