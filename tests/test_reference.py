"""The reference experiment: MaxViT-T regression, dry run and a small training on real data."""

from pathlib import Path

import pandas as pd
import pytest

from benchkit.cli import main
from benchkit.experiment import plan
from benchkit.models.grader import build_model

REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "maxvit_regression.yaml"


def test_reference_yaml_is_the_seed_study():
    config, runs = plan(REFERENCE)
    assert len(runs) == 1
    run = runs[0]
    assert run.seed == 27 and run.model.backbone.name == "maxvit_t" and run.model.backbone.pretrained
    assert run.model.backbone.dropout == 0.5 and run.model.head.name == "regression"
    assert run.model.head.options == {"loss": "l1"}
    t = run.train
    assert (t.batch_size, t.optimizer.lr, t.optimizer.weight_decay, t.epochs) == (32, 5e-5, 1e-8, 500)
    assert t.amp and t.ema.enabled and t.early_stopping.patience == 50 and t.early_stopping.monitor == "loss"
    assert t.augmentation == "reference" and config.evaluation.bootstrap.n_resamples == 10000


def test_dry_run_trainable_count_excludes_exactly_blocks0(capsys):
    assert main(["run", str(REFERENCE), "--dry-run"]) == 0
    text = capsys.readouterr().out
    _, runs = plan(REFERENCE)
    arch = runs[0].model.model_copy(deep=True)
    arch.backbone.pretrained = False
    model = build_model(arch, 6)
    total = sum(p.numel() for p in model.parameters())
    blocks0 = sum(p.numel() for p in model.backbone.body.blocks[0].parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == total - blocks0
    assert f"{total:,}" in text and f"{trainable:,}" in text and "maxvit_t-regression__s27" in text


@pytest.mark.realdata
def test_reference_recipe_trains_on_a_slice_of_the_real_data(hair_loss_root, tmp_path):
    out = tmp_path / "out"
    code = main(["run", str(REFERENCE), "--out", str(out), "--quiet",
                 "--set", f"data.root={hair_loss_root}", "--set", "data.image_size=224",
                 "--set", "data.max_per_split=16", "--set", "train.epochs=1", "--set", "train.batch_size=8",
                 "--set", "models.*.backbone.pretrained=false", "--set", "evaluation.bootstrap.n_resamples=500",
                 "--set", "data.cache=false"])
    assert code == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.status.tolist() == ["ok"] and board.epochs.tolist() == [1]
    pred = pd.read_csv(out / "runs" / "maxvit_t-regression__s27" / "predictions_test.csv")
    assert len(pred) == 16 and pred.image.str.startswith("test/").all()
    assert set(pred.target) <= set(range(6)) and pred.score.between(0, 5).all()
