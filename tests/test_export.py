"""benchkit export: the backbone loads into its own library with every key matched and gives the run's
features; config.json says how to preprocess and decode."""

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

import benchkit
from benchkit.cli import main
from benchkit.results import run_folder
from benchkit.results.exported import HEAD_PREFIX
from conftest import small_experiment


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    experiment = small_experiment(tmp, models=[{"backbone": "resnet18", "head": "coral"}],
                                  train={"epochs": 1, "batch_size": 16, "augmentation": "none",
                                         "ema": {"enabled": False}, "early_stopping": {"patience": 5}})
    assert main(["run", str(experiment), "--out", str(tmp / "out"), "--quiet"]) == 0
    run_dir = tmp / "out" / "runs" / "resnet18-coral__s0"
    assert main(["export", str(run_dir), "--out", str(tmp / "exported")]) == 0
    return run_dir, tmp / "exported"


def _images(run, count=6) -> torch.Tensor:
    pixels = torch.randint(0, 256, (count, 3, run.input_size, run.input_size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return run.preprocessor(pixels, train=False)


def test_exported_timm_backbone_loads_with_every_key_and_gives_the_run_features(timm_run):
    run_dir, exported = timm_run
    config = json.loads((exported / "config.json").read_text())
    arch = config["architecture"]
    assert (arch["library"], arch["name"], arch["kwargs"]) == ("timm", "resnet18", {"num_classes": 0})
    tensors = load_file(exported / "model.safetensors")
    backbone = {k: v for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)}
    assert backbone and any(k.startswith(HEAD_PREFIX) for k in tensors)

    plain = timm.create_model(arch["name"], **arch["kwargs"])
    result = plain.load_state_dict(backbone, strict=True)  # raises on any missing or unexpected key
    assert not result.missing_keys and not result.unexpected_keys

    # timm's own loader, from the exported file (it ignores the head's keys)
    model = timm.create_model(arch["name"], pretrained=True, pretrained_cfg_overlay={"file": str(exported / "model.safetensors")},
                              **arch["kwargs"]).eval()
    run = benchkit.load_run(run_dir, device="cpu")
    images = _images(run)
    with torch.no_grad():
        assert torch.equal(model(images), run.model.backbone(images))
        assert torch.equal(plain.eval()(images), run.model.backbone(images))


def test_config_json_says_size_normalisation_classes_head_and_decoding(timm_run):
    run_dir, exported = timm_run
    config = json.loads((exported / "config.json").read_text())
    weights, checkpoint = run_folder.read_best(run_dir)
    checkpoint["model"] = weights
    assert config["input_size"] == checkpoint["input_size"] == 32
    assert config["mean"] == pytest.approx(checkpoint["mean"]) and config["std"] == pytest.approx(checkpoint["std"])
    assert config["classes"] == checkpoint["classes"] and len(config["classes"]) == 4
    head = config["head"]
    assert head["name"] == "coral" and head["has_probabilities"] and head["decoding"] in head["decodings"]
    assert config["run_id"] == "resnet18-coral__s0" and config["benchkit"]["run"]["model"]["head"]["name"] == "coral"
    head_keys = {k[len(HEAD_PREFIX):] for k in load_file(exported / "model.safetensors") if k.startswith(HEAD_PREFIX)}
    assert head_keys == {k[len("head."):] for k in checkpoint["model"] if k.startswith("head.")}


def test_load_run_accepts_the_exported_folder_and_predicts_as_the_run(timm_run, tmp_path, capsys):
    import shutil

    import numpy as np
    import pandas as pd
    from PIL import Image
    run_dir, exported = timm_run
    moved = tmp_path / "elsewhere"
    shutil.copytree(exported, moved)            # only the two files: no run folder, no best.pt
    assert sorted(p.name for p in moved.iterdir()) == ["config.json", "model.safetensors"]
    original, loaded = benchkit.load_run(run_dir, device="cpu"), benchkit.load_run(moved, device="cpu")
    assert loaded.classes == original.classes and loaded.input_size == original.input_size
    pictures = [np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8) for seed in range(6)]
    a, b = original.predict(pictures), loaded.predict(pictures)
    assert [r["level"] for r in a] == [r["level"] for r in b] and [r["score"] for r in a] == [r["score"] for r in b]
    assert [r["probabilities"] for r in a] == [r["probabilities"] for r in b]
    Image.fromarray(pictures[0]).save(tmp_path / "p.png")
    assert main(["predict", "--run", str(moved), str(tmp_path / "p.png"), "--csv", str(tmp_path / "p.csv")]) == 0
    assert pd.read_csv(tmp_path / "p.csv").level.tolist() == [a[0]["level"]]
