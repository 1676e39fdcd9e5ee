"""The GPU paths: float16 with GradScaler and fused AdamW and no host synchronisation per step, the
device-held split, compiled steps replayed as CUDA graphs, runs packed on one GPU reporting their
memory. CUDA-only tests are marked ``gpu`` and skip with the reason elsewhere; compiling on the CPU
(the path CI can run where a C compiler exists) is tested here too."""

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from benchkit.cli import main
from benchkit.config import ModelConfig, TrainConfig
from benchkit.data.decode import ImageArrayDataset
from benchkit.models.grader import build_model
from benchkit.training.batches import DeviceLoader, batch_loader
from benchkit.training.engine import Engine
from benchkit.training.transforms import BatchPreprocessor, reference_augmentation
from conftest import small_experiment

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU and a CUDA build of torch)")
K = 4


def _arrays(n: int, seed: int) -> ImageArrayDataset:
    rng = np.random.default_rng(seed)
    return ImageArrayDataset(rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8), rng.integers(0, K, n))


def _engine(device: str, augmentation: bool = False, **train) -> Engine:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone={"name": "tiny_cnn", "dropout": 0.0}, head="regression"), K)
    prep = BatchPreprocessor(reference_augmentation(16) if augmentation else [], model.backbone.mean,
                             model.backbone.std)
    recipe = {"epochs": 2, "batch_size": 8, "device": device, "optimizer": {"lr": 3e-3},
              "early_stopping": {"patience": None}, "ema": {"update_after_step": 0, "update_every": 2}, **train}
    return Engine(model, prep, TrainConfig.model_validate(recipe), K)


def _synchronisations(device: str, steps: int) -> int:
    """Host synchronisations CUDA reports over a two-epoch fit capped at ``steps`` steps per epoch."""
    engine = _engine(device, augmentation=False, max_train_batches=steps, log_every=1000)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine.fit(_arrays(96, 1), _arrays(16, 2), seed=0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.gpu
@CUDA
def test_float16_training_on_cuda_uses_fused_adamw_and_never_waits_for_the_gpu_inside_a_step():
    engine = _engine("cuda")
    assert engine.runtime.amp_dtype == torch.float16 and engine.scaler.is_enabled()
    assert engine.optimizer.defaults["fused"] is True
    result = engine.fit(_arrays(48, 1), _arrays(16, 2), seed=0)
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    assert _synchronisations("cuda", 3) == _synchronisations("cuda", 9)  # per epoch, not per step


@pytest.mark.gpu
@CUDA
def test_the_device_held_split_on_cuda_gives_the_loaders_batches():
    data = _arrays(40, 3)
    torch.manual_seed(1)
    loader = [(x, y) for x, y in batch_loader(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    torch.manual_seed(1)
    held = DeviceLoader(data, 8, torch.device("cuda"), shuffle=True, generator=torch.Generator().manual_seed(4))
    batches = list(held)
    assert held.images.is_cuda and all(x.is_cuda for x, _ in batches)
    for (x, y), (dx, dy) in zip(loader, batches, strict=True):
        assert torch.equal(x, dx.cpu()) and torch.equal(y, dy.cpu())


@pytest.mark.gpu
@CUDA
def test_a_compiled_step_replays_cuda_graphs_on_full_batches_only():
    engine = _engine("cuda", augmentation=True, compile="reduce-overhead", amp_dtype="bfloat16")
    assert engine.runtime.cuda_graphs and engine.runtime.static_shapes
    steps = []
    engine.on_step = lambda step, loss: steps.append(step)
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    result = engine.fit(_arrays(44, 1), _arrays(16, 2), seed=0)  # 44 = 5 full batches of 8 and a ragged 4
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["valid_score_mae"]) for row in result.history)
    assert max(steps) == 5  # the ragged batch is dropped: one shape, one graph
    assert any(not torch.equal(before[k], v) for k, v in engine.model.state_dict().items())


@pytest.mark.gpu
@CUDA
def test_runs_packed_on_one_gpu_report_their_gpu_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    experiment = small_experiment(tmp_path, grid={"backbone.dropout": [0.0, 0.3]})
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet", "--jobs", "2"]) == 0
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert (board.status == "ok").all() and (board.peak_gpu_mb > 0).all() and (board.device == "cuda").all()


def test_fused_adamw_is_used_where_asked_and_automatically_on_cuda_only():
    from benchkit.errors import ConfigError
    from benchkit.training.optim import create_optimizer
    from benchkit.training.runtime import Runtime
    assert not Runtime.resolve(TrainConfig(device="cpu")).fused
    assert Runtime.resolve(TrainConfig(device="cuda")).fused
    assert not Runtime.resolve(TrainConfig(device="cuda", optimizer={"name": "lamb"})).fused
    assert not Runtime.resolve(TrainConfig(device="cuda", optimizer={"fused": False})).fused
    assert Runtime.resolve(TrainConfig(device="cpu", optimizer={"fused": True})).fused
    model = torch.nn.Linear(3, 1)
    assert create_optimizer(model, TrainConfig().optimizer, fused=True).defaults["fused"] is True
    assert not create_optimizer(model, TrainConfig().optimizer).defaults.get("fused")
    assert _engine("cpu", optimizer={"lr": 1e-3, "fused": True}).optimizer.defaults["fused"] is True
    with pytest.raises(ConfigError, match="'lamb' has no fused kernels"):
        create_optimizer(model, TrainConfig(optimizer={"name": "lamb"}).optimizer, fused=True)


def test_compiled_training_reads_full_batches_only_and_evaluation_reads_every_image():
    from benchkit.training.runtime import Runtime
    data = _arrays(44, 3)  # 5 batches of 8 and a ragged 4
    for compile_setting, batches in ((False, [8] * 5 + [4]), (True, [8] * 5)):
        runtime = Runtime.resolve(TrainConfig(device="cpu", compile=compile_setting))
        loader = runtime.loader(data, shuffle=True, batch_size=8, generator=torch.Generator().manual_seed(0))
        assert [len(y) for _, y in loader] == batches and len(loader) == len(batches)
        assert sum(len(y) for _, y in runtime.loader(data, shuffle=False, batch_size=8)) == 44


def test_the_runtime_holds_the_gpu_settings():
    from benchkit.training.runtime import Runtime
    cpu = Runtime.resolve(TrainConfig(device="cpu", batch_size=32))
    assert (cpu.compile_mode, cpu.static_shapes, cpu.cuda_graphs, cpu.augment_batches, cpu.eval_batch_size) == (
        None, False, False, 1, 64)
    cuda = Runtime.resolve(TrainConfig(device="cuda", batch_size=32, compile="reduce-overhead"))
    assert (cuda.compile_mode, cuda.static_shapes, cuda.cuda_graphs, cuda.augment_batches, cuda.eval_batch_size) == (
        "reduce-overhead", True, True, 8, 256)
    assert Runtime.resolve(TrainConfig(device="cpu", compile=True)).compile_mode == "default"
    assert not Runtime.resolve(TrainConfig(device="cpu", compile="reduce-overhead")).cuda_graphs
    assert Runtime.resolve(TrainConfig(device="cuda", batch_size=200)).eval_batch_size == 400
    assert Runtime.resolve(TrainConfig(device="cpu", augment_chunk=64, batch_size=16)).augment_batches == 4


def test_the_engine_reports_the_running_loss_as_a_device_tensor_without_reading_it():
    engine = _engine("cpu", max_train_batches=3, log_every=1)
    reported = []
    engine.on_step = lambda step, loss: reported.append(loss)
    result = engine.fit(_arrays(48, 1), _arrays(16, 2), seed=0)
    assert len(reported) == 6 and all(isinstance(loss, torch.Tensor) and loss.dim() == 0 for loss in reported)
    assert float(reported[2]) == pytest.approx(result.history[0]["train_loss"])


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on the CPU needs a C compiler")
def test_a_compiled_run_on_the_cpu_gives_the_eager_runs_validation_mae():
    eager = _engine("cpu").fit(_arrays(48, 1), _arrays(24, 2), seed=0)
    engine = _engine("cpu", compile=True)
    assert engine.runtime.static_shapes and not engine.runtime.cuda_graphs
    from torch._dynamo.utils import counters
    counters.clear()
    compiled = engine.fit(_arrays(48, 1), _arrays(24, 2), seed=0)  # 48 = 6 full batches: nothing dropped
    assert counters["stats"]["unique_graphs"] >= 1  # the step went through the compiler
    # fused kernels round differently; over 12 steps the losses part by a few percent, the score's MAE stays close
    for row_eager, row_compiled in zip(eager.history, compiled.history, strict=True):
        assert abs(row_eager["valid_score_mae"] - row_compiled["valid_score_mae"]) <= 0.02
