"""What a finished run reports and saves: the selected epoch's weights (for a minimised and a maximised
monitor), and decodings calibrated on the validation outputs only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score

import benchkit
from benchkit.cli import main
from benchkit.heads.coral import CoralHead
from benchkit.heads.regression import RegressionHead
from benchkit.io import read_json
from conftest import small_experiment

CLASSES = ["L0", "L1", "L2", "L3"]
MONITORS = {"min": "loss", "max": "qwk"}


def write_reversed_imagefolder(root, per_class: dict[str, int], seed: int = 0) -> None:
    """Brightness grows with the level in train and test; in valid the class folders are reversed, so the
    better a model fits train, the worse it scores on valid: the best validation epoch comes early."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for level in range(len(CLASSES)):
            folder_level = len(CLASSES) - 1 - level if split == "valid" else level
            folder = root / split / CLASSES[folder_level]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = 40 + 55 * level + rng.normal(0, 12, (32, 32, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{split}{level}_{i}.png")


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("selection")
    write_reversed_imagefolder(tmp / "data", {"train": 12, "valid": 6, "test": 4})
    models = [{"name": name, "backbone": "tiny_cnn", "head": "regression",
               "train": {"early_stopping": {"monitor": monitor, "patience": 10}}}
              for name, monitor in MONITORS.items()]
    path = small_experiment(
        tmp, models=models,
        data={"format": "imagefolder", "root": str(tmp / "data"), "classes": CLASSES, "image_size": 32,
              "cache": False},
        train={"epochs": 4, "batch_size": 8, "optimizer": {"lr": 3e-3}, "augmentation": "none",
               "ema": {"enabled": False}})
    out = tmp / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return tmp, out, pd.read_csv(out / "leaderboard.csv").set_index("model")


@pytest.mark.parametrize("name", sorted(MONITORS))
def test_the_run_reports_the_selected_epochs_validation_metrics(selected, name):
    _, out, board = selected
    row, monitor = board.loc[name], MONITORS[name]
    history = pd.read_csv(out / "runs" / row.run_id / "history.csv").set_index("epoch")
    values = history[f"valid_{monitor}"]
    best = values.idxmin() if monitor == "loss" else values.idxmax()
    assert row.best_epoch == best
    assert best < row.epochs and values[best] != values.iloc[-1], values.tolist()  # the toy run's premise
    for metric in ("acc", "mae", "qwk", "off1", "f1"):
        assert row[f"valid_{metric}"] == pytest.approx(history.loc[best, f"valid_{metric}"], abs=1e-9), metric


@pytest.mark.parametrize("name", sorted(MONITORS))
def test_the_saved_weights_are_the_evaluated_ones(selected, name):
    tmp, out, board = selected
    run_dir = out / "runs" / board.loc[name].run_id
    assert read_json(run_dir / "run.json")["best_epoch"] == board.loc[name].best_epoch
    expected = pd.read_csv(run_dir / "predictions_valid.csv")
    predicted = benchkit.load_run(run_dir, device="cpu").predict_files([tmp / "data" / i for i in expected.image])
    assert [p["level"] for p in predicted] == expected.pred.tolist()
    assert [p["score"] for p in predicted] == pytest.approx(expected.score.tolist(), abs=1e-5)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Runs whose heads decode with calibration, on a dataset whose valid (24) and test (16) splits differ;
    every fit of a decoding (``calibrate_estimate``, which ``calibrate`` calls too) is recorded."""
    tmp = tmp_path_factory.mktemp("calibrated")
    models = [{"backbone": "tiny_cnn", "head": {"name": head, "decode": "calibrated"}} for head in ("regression", "coral")]
    path = small_experiment(tmp, models=models, data={
        "format": "synthetic", "image_size": 32,
        "synthetic": {"num_classes": 4, "train": 48, "valid": 24, "test": 16, "image_size": 32}})
    seen = []
    with pytest.MonkeyPatch.context() as patch:
        for cls in (RegressionHead, CoralHead):
            def recording(self, estimate, targets, _fit=cls.calibrate_estimate):
                seen.append((type(self).__name__, targets.tolist()))
                return _fit(self, estimate, targets)
            patch.setattr(cls, "calibrate_estimate", recording)
        assert main(["run", str(path), "--out", str(tmp / "out"), "--quiet"]) == 0
    return tmp / "out", seen


def test_calibration_sees_the_validation_outputs_only(calibrated):
    out, seen = calibrated
    assert sorted(name for name, _ in seen) == ["CoralHead", "RegressionHead"]
    for head, (_, targets) in zip(("coral", "regression"), sorted(seen)):
        valid = pd.read_csv(out / "runs" / f"tiny_cnn-{head}__s0" / "predictions_valid.csv")
        assert targets == valid.target.tolist()


@pytest.mark.parametrize("head", ["regression", "coral"])
def test_the_reported_calibration_is_the_validation_score_of_the_calibrated_decoding(calibrated, head):
    out, _ = calibrated
    run_dir = out / "runs" / f"tiny_cnn-{head}__s0"
    report = json.loads((run_dir / "details.json").read_text())["calibration"]
    valid = pd.read_csv(run_dir / "predictions_valid.csv")
    assert report["metric"] == "qwk"
    assert report["valid_after"] == pytest.approx(
        cohen_kappa_score(valid.target, valid.pred, weights="quadratic", labels=range(4)), abs=1e-9)
    assert report["valid_after"] >= report["valid_before"]
    if head == "regression":
        rounded = np.clip(np.round(valid.score), 0, 3)
        assert report["valid_before"] == pytest.approx(
            cohen_kappa_score(valid.target, rounded, weights="quadratic", labels=range(4)), abs=1e-9)
