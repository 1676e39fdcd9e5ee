"""The shipped comparison experiments on a slice of the real hair-loss data: the ablation's pivot, the heads' views."""

from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from benchkit.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
HEADS = ["regression", "softmax", "coral", "corn", "clm", "soft_label"]


UPDATING_EMA = "train.ema={enabled: true, beta: 0.9, update_after_step: 0, update_every: 1}"
"""The recipe's EMA (update_after_step 100, update_every 10) never averages within a few steps; this one does."""
LEARNING_MARGIN = {"valid_score_mae": -0.3, "test_score_mae": -0.1, "test_qwk": 0.15}
"""How much better than the untrained model each trained head must be; measured on 2 CPU cores: valid score MAE 0.44
to 0.72 lower, test score MAE (24 images) 0.14 to 0.53 lower, test QWK 0.23 to 0.53 higher."""


def _small_real_run(experiment: str, out: Path, hair_loss_root: Path, *overrides: str) -> int:
    settings = [f"data.root={hair_loss_root}", "data.max_per_split=12", "train.epochs=1",
                "train.batch_size=6", "models.*.backbone.pretrained=false", UPDATING_EMA,
                "evaluation.bootstrap.n_resamples=200", "evaluation.plots=false",
                f"data.cache_dir={out.parent / 'cache'}", *overrides]
    args = ["run", str(EXPERIMENTS / experiment), "--out", str(out), "--quiet"]
    for setting in settings:
        args += ["--set", setting]
    return main(args)


@pytest.mark.realdata
def test_two_ablation_cells_train_on_real_data_and_write_the_pivot(hair_loss_root, tmp_path):
    out = tmp_path / "ablation"
    code = _small_real_run("ablation_freeze_dropout.yaml", out, hair_loss_root,
                           "grid={backbone.freeze: [2, all], backbone.dropout: [0.5]}")
    assert code == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.status.tolist() == ["ok", "ok"]
    assert sorted(board.freeze.astype(str)) == ["2", "all"] and set(board.dropout) == {0.5}
    assert board.params_trainable.nunique() == 2

    pivot = pd.read_csv(out / "leaderboard_pivot.csv", index_col=0)
    assert sorted(pivot.index.astype(str)) == ["2", "all"] and list(pivot.columns) == ["0.5"]
    for row in board.itertuples():
        assert pivot.loc[str(row.freeze), "0.5"] == pytest.approx(row.test_qwk)  # sort_by: test_qwk
    assert "pivot" in load_workbook(out / "leaderboard.xlsx").sheetnames


@pytest.mark.realdata
def test_heads_comparison_on_real_data_gives_every_head_the_seed_view_and_the_paired_test(hair_loss_root, tmp_path):
    """Every head learns on frozen ImageNet features of a slice (the offline Lite0 weights, as in
    docs/measurements.md): each run beats its untrained twin (same seed and initialisation, learning rate 1e-12)
    by ``LEARNING_MARGIN``; the aggregated view and the paired tests cover every head."""
    lite0 = ["models.*.backbone={name: tf_efficientnet_lite0, pretrained: true, freeze: all}",
             "evaluation.reference=tf_efficientnet_lite0-regression", "train.augmentation=none",
             "data.max_per_split=24", "train.batch_size=8", "seeds=[27, 28]"]
    out = tmp_path / "heads"
    assert _small_real_run("heads_comparison.yaml", out, hair_loss_root, *lite0, "train.epochs=10",
                           "train.optimizer.lr=3e-3") == 0
    assert _small_real_run("heads_comparison.yaml", tmp_path / "untrained", hair_loss_root, *lite0,
                           "train.optimizer.lr=1e-12") == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert (board.status == "ok").all() and len(board) == 12
    assert sorted(board["head"].unique()) == sorted(HEADS)
    assert (board.epochs * 3 > 1).all()  # 3 steps an epoch: the EMA (from step 0, every step) averaged them
    untrained = pd.read_csv(tmp_path / "untrained" / "leaderboard.csv").set_index("run_id")
    for row in board.itertuples():
        for column, margin in LEARNING_MARGIN.items():
            gain = getattr(row, column) - untrained.loc[row.run_id, column]
            assert gain <= margin if margin < 0 else gain >= margin, (row.run_id, column, gain)

    aggregated = pd.read_csv(out / "leaderboard_aggregated.csv")
    assert sorted(aggregated["head"]) == sorted(HEADS) and (aggregated.runs == 2).all()
    reference = aggregated.set_index("head").loc["regression"]
    others = aggregated[aggregated["head"] != "regression"]
    assert reference.significance == "reference" and pd.isna(reference.p_value)
    assert others.p_value.between(0, 1).all() and others.significance.isin(["ns", "*", "**", "***"]).all()
    assert (others.p_holm >= others.p_value).all() and aggregated.best_group.isin([True, False]).all()

    workbook = load_workbook(out / "leaderboard.xlsx", read_only=True)
    sheet = workbook["aggregated"]
    header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    assert {"p_value", "p_holm", "significance", "best_group", "test_mae_mean", "test_mae_lo", "test_mae_hi",
            "test_score_mae_mean"} <= set(header)
    assert sheet.max_row == 1 + len(HEADS)
