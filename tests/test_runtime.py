"""The runtime settings and the one inference path: the engine, the feature cache and predict give the
same outputs for the same weights and images, and the settings are resolved once, the same way."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from benchkit import load_run
from benchkit.cli import main
from benchkit.config import RunSpec, TrainConfig
from benchkit.data.decode import ImageArrayDataset
from benchkit.data.prepare import decoded_split, prepare_dataset
from benchkit.training.engine import Engine
from benchkit.training.feature_cache import FeaturePassThrough, clear_memory, feature_sets, head_only
from benchkit.training.runtime import Runtime, forward_all
from benchkit.training.transforms import BatchPreprocessor
from conftest import small_experiment


def test_runtime_resolves_device_precision_and_batch_once():
    cpu = Runtime.resolve(TrainConfig(device="cpu", batch_size=5))
    assert cpu.device == torch.device("cpu") and cpu.amp_dtype is None and cpu.eval_batch_size == 10
    assert Runtime.resolve(TrainConfig(device="cpu", amp_dtype="bfloat16")).amp_dtype == torch.bfloat16
    assert Runtime.resolve(TrainConfig(device="cpu", eval_batch_size=7)).eval_batch_size == 7
    cuda = Runtime.resolve(TrainConfig(device="cuda"))
    assert cuda.device.type == "cuda" and cuda.amp_dtype == torch.float16
    assert Runtime.resolve(TrainConfig(device="cuda", amp=False)).amp_dtype is None
    auto = Runtime.resolve(TrainConfig())
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert Runtime.resolve(TrainConfig(device="cuda"), device="cpu").device == torch.device("cpu")


def test_forward_all_keeps_order_and_batches_and_leaves_eval_mode():
    model = torch.nn.Linear(3 * 2 * 2, 2)
    flat = torch.nn.Sequential(torch.nn.Flatten(), model).train()
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 2, 2), dtype=np.uint8)
    runtime = Runtime.resolve(device="cpu", eval_batch_size=3)
    prep = BatchPreprocessor([], (0.5,) * 3, (0.25,) * 3)
    out = forward_all(flat, images, runtime, prep)
    assert not flat.training and out.dtype == torch.float32 and out.shape == (7, 2)
    with torch.no_grad():
        torch.testing.assert_close(out, flat((torch.from_numpy(images).float() / 255 - 0.5) / 0.25))
    assert torch.equal(out, forward_all(flat, torch.from_numpy(images), runtime, prep))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one_path")
    models = [{"backbone": {"name": "tiny_cnn", "freeze": "all"}, "head": "softmax"}]
    out = tmp / "out"
    assert main(["run", str(small_experiment(tmp, models=models)), "--out", str(out), "--quiet"]) == 0
    return out / "runs" / "tiny_cnn-softmax__s0"


def test_engine_feature_cache_and_predict_give_identical_outputs(finished_run):
    spec = RunSpec.model_validate(yaml.safe_load((finished_run / "config.yaml").read_text()))
    loaded = load_run(finished_run, device="cpu")
    dataset = prepare_dataset(spec)
    images = decoded_split(spec, dataset, "test", loaded.input_size)
    labels = dataset.splits["test"].labels
    runtime = loaded.runtime
    model, prep = loaded.model, BatchPreprocessor([], loaded.model.backbone.mean, loaded.model.backbone.std)
    engine = Engine(model, prep, spec.train, dataset.num_classes, runtime=runtime)
    by_engine = engine.outputs(ImageArrayDataset(images, labels))
    clear_memory()  # compute the features here, not reuse the run's
    features = feature_sets(spec.model.backbone, model, prep, loaded.input_size, {"test": images},
                            {"test": labels}, None, runtime)["test"]
    by_features = Engine(head_only(model), FeaturePassThrough(), spec.train, dataset.num_classes,
                         runtime=runtime).outputs(features)
    by_predict = loaded.outputs(images)
    assert by_engine.shape == (len(labels), dataset.num_classes)
    assert torch.equal(by_engine, by_features) and torch.equal(by_engine, by_predict)
    saved = pd.read_csv(finished_run / "predictions_test.csv")
    pred = model.head.predict(by_predict)
    assert (saved.pred.to_numpy() == pred.level.numpy()).all()
    np.testing.assert_array_equal(saved.score.to_numpy().astype(np.float32), pred.score.numpy())


def test_forward_all_reads_memory_mapped_cache_rows_like_an_array():
    """The image cache hands splits over as MappedRows (a memory-mapped view): one batch path for both."""
    from benchkit.data.image_cache import MappedRows
    pixels = np.random.default_rng(0).integers(0, 256, (7, 3, 8, 8), dtype=np.uint8)
    rows = MappedRows(pixels, np.array([4, 0, 6, 2, 1]), "test")
    runtime = Runtime.resolve(TrainConfig(device="cpu", eval_batch_size=2))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    as_rows = forward_all(model, rows, runtime, lambda x, train: x.float())
    as_array = forward_all(model, np.asarray(rows), runtime, lambda x, train: x.float())
    assert torch.equal(as_rows, as_array) and as_rows.shape == (5, 2)
