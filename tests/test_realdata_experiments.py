"""The shipped comparison experiments on a slice of the real hair-loss data: the ablation's pivot, the heads' views."""

from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from benchkit.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
HEADS = ["regression", "softmax", "coral", "corn", "clm", "soft_label"]


def _small_real_run(experiment: str, out: Path, hair_loss_root: Path, *overrides: str) -> int:
    settings = [f"data.root={hair_loss_root}", "data.max_per_split=12", "train.epochs=1",
                "train.batch_size=6", "models.*.backbone.pretrained=false",
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
    out = tmp_path / "heads"
    code = _small_real_run("heads_comparison.yaml", out, hair_loss_root,
                           "models.*.backbone.freeze=all", "train.augmentation=none", "train.epochs=3",
                           "seeds=[27, 28]")
    assert code == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert (board.status == "ok").all() and len(board) == 12
    assert sorted(board["head"].unique()) == sorted(HEADS)

    aggregated = pd.read_csv(out / "leaderboard_aggregated.csv")
    assert sorted(aggregated["head"]) == sorted(HEADS) and (aggregated.runs == 2).all()
    reference = aggregated.set_index("head").loc["regression"]
    others = aggregated[aggregated["head"] != "regression"]
    assert reference.significance == "reference" and pd.isna(reference.p_value)
    assert others.p_value.between(0, 1).all() and others.significance.isin(["ns", "*", "**", "***"]).all()

    workbook = load_workbook(out / "leaderboard.xlsx", read_only=True)
    sheet = workbook["aggregated"]
    header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    assert {"p_value", "significance", "test_mae_mean", "test_mae_lo", "test_mae_hi"} <= set(header)
    assert sheet.max_row == 1 + len(HEADS)
