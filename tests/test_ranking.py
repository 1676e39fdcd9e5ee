"""benchkit.evaluation.ranking and the rank view: average ranks, Friedman (scipy), Nemenyi (by its formula), the
critical difference (Demšar's table), and which blocks and configurations the view ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import friedmanchisquare, rankdata, studentized_range

from benchkit.evaluation.ranking import critical_difference, rank_configurations
from benchkit.results.ranks import block_values, rank_table, rankings


def _values(blocks=8, k=4, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 0.05, (blocks, k)) + np.linspace(0.3, 0.6, k)  # config0 lowest, config3 highest
    values[0, 1] = values[0, 0]  # a tie
    return pd.DataFrame(values, columns=[f"config{i}" for i in range(k)])


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_average_ranks_friedman_and_nemenyi_by_hand(higher_is_better):
    values = _values()
    ranking = rank_configurations(values, higher_is_better)
    sign = -1 if higher_is_better else 1
    ranks = np.array([rankdata(sign * row) for row in values.to_numpy()])
    want = pd.Series(ranks.mean(axis=0), index=values.columns)
    pd.testing.assert_series_equal(ranking.mean_ranks, want.sort_values(kind="stable"), check_names=False)
    best = "config3" if higher_is_better else "config0"
    assert ranking.mean_ranks.index[0] == best and ranking.mean_ranks.iloc[0] < 1.5
    statistic, p_value = friedmanchisquare(*(values[c] for c in values))
    assert ranking.statistic == pytest.approx(statistic) and ranking.p_value == pytest.approx(p_value)
    k, n = values.shape[1], len(values)
    for a in values:
        for b in values:
            q = abs(want[a] - want[b]) / np.sqrt(k * (k + 1) / (6 * n))
            expected = 1.0 if a == b else studentized_range.sf(q * np.sqrt(2), k, np.inf)
            assert ranking.nemenyi.at[a, b] == pytest.approx(expected, abs=1e-9), (a, b)
    assert ranking.blocks == n


@pytest.mark.parametrize("k, q_alpha", [(3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_critical_difference_matches_demsars_table(k, q_alpha):
    assert critical_difference(k, 12) / np.sqrt(k * (k + 1) / 72) == pytest.approx(q_alpha, abs=1e-3)  # 3 digits


def test_pairs_further_apart_than_the_critical_difference_are_the_significant_ones():
    ranking = rank_configurations(_values(blocks=12, k=5, seed=3), higher_is_better=False)
    ranks = ranking.mean_ranks
    for a in ranks.index:
        for b in ranks.index:
            if a != b:
                far = abs(ranks[a] - ranks[b]) > ranking.critical_difference
                assert far == (ranking.nemenyi.at[a, b] < ranking.alpha), (a, b)


def test_too_few_configurations_or_blocks_or_a_gap_is_refused():
    with pytest.raises(ValueError, match="at least 3 configurations"):
        rank_configurations(_values(k=2), higher_is_better=False)
    with pytest.raises(ValueError, match="2 blocks"):
        rank_configurations(_values(blocks=1), higher_is_better=False)
    gap = _values()
    gap.iloc[2, 1] = np.nan
    with pytest.raises(ValueError, match="every configuration"):
        rank_configurations(gap, higher_is_better=False)


def _frame(values: pd.DataFrame, split="official", fold=None) -> pd.DataFrame:
    rows = [{"run_id": f"{c}__s{seed}", "model": c, "seed": seed, "split": split, "fold": fold, "ensemble": "",
             "status": "ok", "test_mae": values.at[seed, c]} for seed in values.index for c in values]
    return pd.DataFrame(rows)


def test_the_view_ranks_complete_blocks_of_runs_per_split_strategy():
    values = _values(blocks=5)
    frame = _frame(values)
    frame.loc[(frame.model == "config2") & (frame.seed == 4), "status"] = "failed"  # block 4 incomplete
    frame = pd.concat([frame, pd.DataFrame([{"run_id": "config0__seeds", "model": "config0", "seed": np.nan,
                                             "split": "official", "ensemble": "seeds", "status": "ok",
                                             "test_mae": 0.0}]),
                       _frame(_values(blocks=3, k=3, seed=1), split="group_kfold", fold=0)], ignore_index=True)
    labels = frame.model + np.where(frame.split == "official", "", " group_kfold")
    found = rankings(frame, labels, "test_mae")
    assert sorted(found) == ["group_kfold", "official"]
    official = found["official"]
    assert official.blocks == 4 and list(official.mean_ranks.index) == list(
        rank_configurations(values.iloc[:4], higher_is_better=False).mean_ranks.index)
    assert official.statistic == pytest.approx(friedmanchisquare(*(values.iloc[:4][c] for c in values)).statistic)
    table = rank_table(found)
    assert len(table) == 4 + 3 and set(table.split) == {"official", "group_kfold"}
    top = table[table.split == "official"].iloc[0]
    assert top.config == official.mean_ranks.index[0] and top.p_nemenyi_vs_top == 1.0


def test_a_configuration_missing_from_most_blocks_is_left_out_not_every_block():
    values = _values(blocks=4)
    frame = _frame(values)
    frame = frame[~((frame.model == "config3") & (frame.seed > 0))]  # config3 only in block 0
    table = block_values(frame, frame.model, "test_mae")
    assert list(table.columns) == ["config0", "config1", "config2"] and len(table) == 4
