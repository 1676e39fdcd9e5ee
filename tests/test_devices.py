"""The engine's promises on every device present: the CPU always, CUDA where there is one (marked ``gpu``).

On CUDA the recipe trains in float16 with a GradScaler and draws dropout masks from the CUDA generator, so an
interrupted fit must restore the scaler and the CUDA RNG state to continue as if it had never stopped, and a
step whose scaled gradients overflow must be skipped while the scale backs off.
"""

from __future__ import annotations

import pytest
import torch

from benchkit.config import ModelConfig, TrainConfig
from benchkit.io import load_torch
from benchkit.models.grader import build_model
from benchkit.training.engine import Engine
from benchkit.training.transforms import BatchPreprocessor, reference_augmentation
from test_batches import _arrays

K = 4
CUDA = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                            reason="needs CUDA (a GPU and a CUDA build of torch)")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
TOLERANCE = {"cpu": 1e-6, "cuda": 1e-3}
"""Relative agreement of two runs that must be the same: CUDA's backward of adaptive pooling adds with atomics,
so two CUDA runs differ in the last bits; a lost random state (other dropout masks) differs by far more."""


def _engine(device: str, **train) -> Engine:
    """tiny_cnn with dropout, the reference augmentation, EMA and a per-step schedule: random draws and state
    everywhere; mixed precision as the recipe asks (float16 + GradScaler on CUDA, none on the CPU)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone={"name": "tiny_cnn", "dropout": 0.3}, head="regression"), K)
    prep = BatchPreprocessor(reference_augmentation(16), model.backbone.mean, model.backbone.std)
    recipe = {"epochs": 4, "batch_size": 8, "device": device, "optimizer": {"lr": 3e-3},
              "scheduler": {"name": "onecycle"}, "ema": {"update_after_step": 2, "update_every": 1},
              "early_stopping": {"patience": None}, "amp": True, **train}
    return Engine(model, prep, TrainConfig.model_validate(recipe), K)


def _deterministic_cudnn(monkeypatch) -> None:
    """Two CUDA runs compared to the last bit need cuDNN's deterministic algorithms (no-op on the CPU)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("device", DEVICES)
def test_an_interrupted_fit_resumes_to_the_uninterrupted_weights(device, tmp_path, monkeypatch):
    _deterministic_cudnn(monkeypatch)
    train, valid = _arrays(40, seed=1), _arrays(16, seed=2)
    straight = _engine(device)
    assert straight.scaler.is_enabled() is (device == "cuda")
    expected = straight.fit(train, valid, seed=5)

    def stop_in_epoch_3(row):
        if row["epoch"] == 3:
            raise _Interrupted  # before epoch 3's checkpoint: last.pt holds epoch 2
    first = _engine(device)
    first.on_epoch = stop_in_epoch_3
    with pytest.raises(_Interrupted):
        first.fit(train, valid, seed=5, checkpoint_path=tmp_path / "last.pt")
    saved = load_torch(tmp_path / "last.pt")
    assert saved["state"]["epoch"] == 2
    assert len(saved["rng"]["cuda"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    torch.manual_seed(123)  # the process went on drawing (on every device) before the resume
    resumed = _engine(device).fit(train, valid, seed=5, checkpoint_path=tmp_path / "last.pt", resume=True)
    assert resumed.resumed_from_epoch == 2

    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    for column in ("train_loss", "valid_loss", "valid_score_mae", "lr"):
        assert [row[column] for row in resumed.history] == pytest.approx(
            [row[column] for row in expected.history], rel=TOLERANCE[device], abs=1e-9), column


@pytest.mark.parametrize("device", DEVICES)
def test_a_step_with_overflowing_scaled_gradients_is_skipped_and_the_scale_backs_off(device):
    engine = _engine(device, ema={"enabled": False})
    engine.scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 16)  # as on CUDA, also on the CPU
    images, _ = _arrays(8, seed=3).gather(range(8))
    inputs = engine.preprocessor(images.to(device), train=False)
    engine.model.eval()  # the forwards below must not move the norm statistics
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}

    engine._optimizer_step(engine.model(inputs).float().mean() * float("inf"))  # every gradient non-finite
    assert engine.scaler.get_scale() == 2.0 ** 15
    assert all(torch.equal(before[k], v) for k, v in engine.model.state_dict().items()), "the step was not skipped"

    engine._optimizer_step(engine.model(inputs).float().mean())
    assert engine.scaler.get_scale() == 2.0 ** 15
    after = engine.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before), "a finite step changed nothing"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU and a CUDA build of torch)")
def test_training_from_the_split_held_on_cuda_equals_training_from_the_pinned_loader(monkeypatch):
    _deterministic_cudnn(monkeypatch)
    train, valid = _arrays(40, seed=1), _arrays(16, seed=2)
    results = {}
    for on_device in (True, False):
        engine = _engine("cuda", data_on_device=on_device, epochs=2)
        results[on_device] = engine.fit(train, valid, seed=5)
    for column in ("train_loss", "valid_score_mae"):
        assert [row[column] for row in results[True].history] == pytest.approx(
            [row[column] for row in results[False].history], rel=TOLERANCE["cuda"]), column
