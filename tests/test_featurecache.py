"""The frozen-backbone feature cache: same head metrics as uncached runs, correct keys, reuse."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import benchkit.training.feature_cache as featurecache
from benchkit.cli import main
from benchkit.config import RunSpec
from benchkit.config.validation import load_experiment
from benchkit.config.expansion import expand_runs
from benchkit.training.feature_cache import (FeatureDataset, compute_features, feature_cache_applies, feature_key,
                                   split_fingerprint, weights_hash)
from benchkit.models.grader import build_model
from benchkit.registry import import_plugins
from benchkit.results import run_folder
from benchkit.training.runtime import Runtime
from benchkit.training.transforms import BatchPreprocessor, build_augmentation
from benchkit_process import ENV, run_command
from conftest import TINY_PLUGIN, small_experiment

HEADS = ("regression", "coral")
TRAIN = {"epochs": 3, "batch_size": 16, "optimizer": {"lr": 3e-2}, "augmentation": "none",
         "ema": {"enabled": True, "beta": 0.9, "update_after_step": 2, "update_every": 1},
         "early_stopping": {"monitor": "qwk", "patience": 2}}


def _experiment(tmp_path, feature_cache: bool, freeze="all", heads=HEADS):
    data = {"format": "synthetic", "image_size": 32, "feature_cache": feature_cache,
            "synthetic": {"num_classes": 4, "train": 48, "valid": 24, "test": 24, "image_size": 32}}
    models = [{"backbone": {"name": "tiny_cnn", "freeze": freeze}, "head": {"name": h}} for h in heads]
    return small_experiment(tmp_path, models=models, data=data, train=TRAIN, seeds=[0])


def _run(tmp_path, feature_cache: bool):
    folder = tmp_path / ("cached" if feature_cache else "uncached")
    folder.mkdir()
    out = folder / "out"
    assert main(["run", str(_experiment(folder, feature_cache)), "--out", str(out), "--quiet"]) == 0
    return out, pd.read_csv(out / "leaderboard.csv").set_index("run_id").sort_index()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHKIT_CACHE_DIR", str(tmp / "cache"))
        featurecache.clear_memory()
        cached = _run(tmp, True)
        uncached = _run(tmp, False)
    return tmp, cached, uncached


def test_cached_features_give_the_same_head_metrics(both):
    _, (_, cached), (_, uncached) = both
    assert list(cached.index) == list(uncached.index) and len(cached) == len(HEADS)
    assert (cached.status == "ok").all()
    metrics = [c for c in cached.columns if c.startswith(("valid_", "test_")) and
               pd.api.types.is_numeric_dtype(cached[c])]
    assert {"test_acc", "test_mae", "test_qwk", "valid_mae"} <= set(metrics)
    np.testing.assert_allclose(cached[metrics].to_numpy(float), uncached[metrics].to_numpy(float),
                               rtol=1e-5, atol=1e-6)
    assert (cached.best_epoch == uncached.best_epoch).all()


def test_the_runs_say_whether_they_used_cached_features(both):
    _, (cached_out, cached), (uncached_out, _) = both
    for run_id in cached.index:
        assert json.loads((cached_out / "runs" / run_id / "details.json").read_text())["feature_cache"]
        assert not json.loads((uncached_out / "runs" / run_id / "details.json").read_text())["feature_cache"]


def test_histories_and_saved_models_match(both):
    _, (cached_out, cached), (uncached_out, _) = both
    for run_id in cached.index:
        a = pd.read_csv(cached_out / "runs" / run_id / "history.csv")
        b = pd.read_csv(uncached_out / "runs" / run_id / "history.csv")
        np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-5, atol=1e-6)
        best_a, _ = run_folder.read_best(cached_out / "runs" / run_id)
        best_b, _ = run_folder.read_best(uncached_out / "runs" / run_id)
        assert set(best_a) == set(best_b) and any(k.startswith("backbone.body.") for k in best_a)
        for key in best_a:
            torch.testing.assert_close(best_a[key], best_b[key], rtol=1e-5, atol=1e-6)


def test_one_split_is_computed_once_for_all_heads(both):
    tmp, _, _ = both
    stored = sorted((tmp / "cache" / "features").glob("*.npy"))
    assert len(stored) == 3  # train, valid, test; shared by both heads
    described = [json.loads(p.with_suffix(".json").read_text()) for p in stored]
    assert sorted(d["split"] for d in described) == ["test", "train", "valid"]


def test_features_are_read_back_from_disk_in_a_new_process(both):
    """``benchkit run`` in a fresh interpreter, with a plugin that fails any feature computation, trains from
    the features the first process stored, and stores nothing new."""
    tmp, _, _ = both
    stored = {p.name: p.stat().st_mtime_ns for p in (tmp / "cache" / "features").iterdir()}
    out = tmp / "again"
    out.mkdir()
    experiment = _experiment(out, True, heads=["corn"])
    raw = yaml.safe_load(experiment.read_text())
    raw["plugins"].append(str(TINY_PLUGIN.parent / "features_must_be_cached.py"))
    experiment.write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run(run_command(experiment, out), capture_output=True, text=True, timeout=300,
                          env={**ENV, "BENCHKIT_CACHE_DIR": str(tmp / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = out / "runs" / "tiny_cnn-corn__s0"
    assert json.loads((run_dir / "details.json").read_text())["feature_cache"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp / "cache" / "features").iterdir()} == stored


def _spec(tmp_path, **train) -> RunSpec:
    import_plugins([str(TINY_PLUGIN)])
    config = load_experiment(_experiment(tmp_path, True), [f"train.{k}={v}" for k, v in train.items()])
    return expand_runs(config)[0]


def test_the_cache_applies_only_to_frozen_unaugmented_runs(tmp_path):
    spec = _spec(tmp_path)
    frozen = build_model(spec.model, 4)
    assert feature_cache_applies(spec.data.feature_cache, frozen, [])
    assert not feature_cache_applies(spec.data.feature_cache, frozen, build_augmentation("reference", 32))
    partial = build_model(spec.model.model_copy(update={"backbone": spec.model.backbone.model_copy(
        update={"freeze": 2})}), 4)
    assert not feature_cache_applies(spec.data.feature_cache, partial, [])
    assert not feature_cache_applies(False, frozen, [])


def test_a_fully_frozen_backbone_stays_in_eval_mode_when_training(tmp_path):
    model = build_model(_spec(tmp_path).model, 4)
    model.train()
    assert model.head.training and not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())


def test_the_key_changes_with_weights_size_content_and_precision(tmp_path):
    spec = _spec(tmp_path)
    torch.manual_seed(0)
    model = build_model(spec.model, 4)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    content = split_fingerprint(images)
    runtime = Runtime.resolve(spec.train)
    backbone = spec.model.backbone
    key = feature_key(backbone, model, 32, content, runtime)
    assert key == feature_key(backbone, model, 32, split_fingerprint(images.copy()), runtime)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert feature_key(backbone, model, 32, split_fingerprint(changed), runtime) != key
    assert feature_key(backbone, model, 48, content, runtime) != key
    before = weights_hash(model.backbone)
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1e-3)
    assert weights_hash(model.backbone) != before
    assert feature_key(backbone, model, 32, content, runtime) != key
    bf16 = Runtime.resolve(_spec(tmp_path, amp_dtype="bfloat16").train)
    assert feature_key(backbone, model, 32, content, bf16) != feature_key(backbone, model, 32, content, runtime)


def test_computed_features_equal_the_backbone_forward(tmp_path):
    spec = _spec(tmp_path)
    model = build_model(spec.model, 4)
    prep = BatchPreprocessor([], model.backbone.mean, model.backbone.std)
    images = np.random.default_rng(1).integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    feats = compute_features(model.backbone, prep, images, Runtime.resolve(device="cpu", eval_batch_size=3))
    model.eval()
    with torch.no_grad():
        expected = model.backbone(prep(torch.from_numpy(images), train=False))
    torch.testing.assert_close(feats, expected)
    dataset = FeatureDataset(feats, np.arange(7) % 4)
    assert len(dataset) == 7 and dataset[3][1] == 3 and dataset[3][0].shape == (model.backbone.num_features,)
