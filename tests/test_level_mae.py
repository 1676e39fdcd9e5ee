"""``mae`` is the error of the decided level, for every decoding a head offers, and ``score_mae`` the error of the
continuous score: both recomputed with scikit-learn from the run's predictions files (``pred``, ``score`` and the
estimate columns each decoding reads)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error

from benchkit.cli import main
from conftest import small_experiment

K = 4
MODELS = [{"name": "reg", "backbone": "tiny_cnn", "head": {"name": "regression", "decode": "calibrated"}},
          {"name": "coral", "backbone": "tiny_cnn", "head": {"name": "coral", "decode": "calibrated"}},
          {"name": "soft", "backbone": "tiny_cnn", "head": {"name": "softmax"}}]


def _decoded(frame: pd.DataFrame, decoding: str) -> np.ndarray:
    """The levels a decoding gives, from the columns of a predictions file."""
    if decoding == "calibrated":
        return frame.pred.to_numpy()  # the run's chosen decoding
    if decoding == "round":
        return np.clip(np.round(frame.score.to_numpy()), 0, K - 1)
    if decoding == "threshold":
        return (frame[[f"exceed_{k}" for k in range(K - 1)]].to_numpy() > 0.5).sum(axis=1)
    probs = frame[[f"prob_{k}" for k in range(K)]].to_numpy()
    if decoding == "argmax":
        return probs.argmax(axis=1)
    return np.clip(np.round(probs @ np.arange(K)), 0, K - 1)  # expected


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("level_mae")
    path = small_experiment(tmp, models=MODELS, train={"epochs": 2, "batch_size": 16, "optimizer": {"lr": 3e-3},
                                                       "augmentation": "none", "ema": {"enabled": False},
                                                       "early_stopping": {"monitor": "score_mae", "patience": 5}})
    assert main(["run", str(path), "--out", str(tmp / "out"), "--quiet"]) == 0
    return tmp / "out", pd.read_csv(tmp / "out" / "leaderboard.csv").set_index("model")


@pytest.mark.parametrize("model, decodings", [("reg", ("round", "calibrated")), ("coral", ("threshold", "calibrated")),
                                              ("soft", ("argmax", "expected"))])
def test_every_decodings_mae_is_the_mae_of_its_levels(board, model, decodings):
    out, rows = board
    row = rows.loc[model]
    for split in ("valid", "test"):
        frame = pd.read_csv(out / "runs" / f"{model}__s0" / f"predictions_{split}.csv")
        y = frame.target.to_numpy()
        assert row[f"{split}_mae"] == pytest.approx(mean_absolute_error(y, frame.pred), abs=1e-12)
        assert row[f"{split}_score_mae"] == pytest.approx(mean_absolute_error(y, frame.score), abs=1e-6)
        assert row[f"{split}_mape"] == pytest.approx(
            mean_absolute_percentage_error(y + 1, frame.pred + 1) * 100, abs=1e-9)
        assert row[f"{split}_score_mae_lo"] <= row[f"{split}_score_mae"] <= row[f"{split}_score_mae_hi"]
        for decoding in decodings:
            assert row[f"{split}_mae__{decoding}"] == pytest.approx(
                mean_absolute_error(y, _decoded(frame, decoding)), abs=1e-12), (split, decoding)
        assert f"{split}_score_mae__{decodings[0]}" not in row  # one score for every decoding


def test_decodings_of_one_head_can_differ_in_mae(board):
    _, rows = board
    pairs = [(rows.loc[m, f"{s}_mae__{a}"], rows.loc[m, f"{s}_mae__{b}"]) for s in ("valid", "test")
             for m, a, b in (("reg", "round", "calibrated"), ("coral", "threshold", "calibrated"),
                             ("soft", "argmax", "expected"))]
    assert any(a != b for a, b in pairs), pairs


def test_sort_by_and_early_stopping_accept_both_maes(board, tmp_path):
    from benchkit.results.leaderboard import build_leaderboard
    out, rows = board
    by_score = build_leaderboard(out, sort_by="test_score_mae")
    assert by_score.test_score_mae.is_monotonic_increasing
    assert build_leaderboard(out, sort_by="test_mae").test_mae.is_monotonic_increasing
    history = pd.read_csv(out / "runs" / "reg__s0" / "history.csv")
    assert {"valid_mae", "valid_score_mae"} <= set(history)
    best = history.set_index("epoch").valid_score_mae.idxmin()
    assert rows.loc["reg", "best_epoch"] == best


def test_a_row_scored_before_level_mae_shows_its_mae_as_score_mae(board, tmp_path):
    """A results folder of an earlier benchkit: ``mae`` there was the score's error; it is shown as ``score_mae``
    and the level errors it never computed are left empty, never the old number under the new name."""
    import shutil
    from benchkit.io import read_json, write_json
    from benchkit.results.leaderboard import build_leaderboard
    out = shutil.copytree(board[0], tmp_path / "out")
    path = out / "runs" / "reg__s0" / "metrics.json"
    content = read_json(path)
    new = content["row"]
    level_mae = [f"{split}_mae{end}" for split in ("valid", "test") for end in ("", "_lo", "_hi")]
    old = {k.replace("_score_mae", "_mae"): v for k, v in new.items() if k not in level_mae}  # the score's there
    write_json(path, {**content, "row": old})
    rows = build_leaderboard(out).set_index("run_id")
    upgraded, untouched = rows.loc["reg__s0"], rows.loc["coral__s0"]
    for split in ("valid", "test"):
        assert upgraded[f"{split}_score_mae"] == new[f"{split}_score_mae"]
        assert upgraded[f"{split}_score_mae_hi"] == new[f"{split}_score_mae_hi"]
        for column in (f"{split}_mae", f"{split}_mape", f"{split}_amae", f"{split}_mae__round"):
            assert pd.isna(upgraded.get(column, np.nan)), column  # not the old number under the new name
        assert upgraded[f"{split}_acc"] == new[f"{split}_acc"]
        assert untouched[f"{split}_mae"] == board[1].loc["coral", f"{split}_mae"]
