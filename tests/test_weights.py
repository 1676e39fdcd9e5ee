"""Weight files, renames, load reports and offline pretrained weights; no test touches the network."""

import socket
import warnings
from pathlib import Path
from urllib.error import URLError

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models import MaxVit_T_Weights

from benchkit.errors import ConfigError, WeightsError
from benchkit.registry import BACKBONES
from benchkit.models.weights import (hub_cache_file, load_into, load_state_dict_file, load_weights_file,
                              rename_by_order)

MAXVIT_FILE = "maxvit_t-bc5ab103.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails as on an offline machine."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


# --- reading files --------------------------------------------------------------------------------

@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd, "epoch": 3},
                                  lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
                                  lambda sd: {f"module.{k}": v for k, v in sd.items()}])
def test_containers_are_unwrapped(tmp_path, wrap):
    state = _net().state_dict()
    loaded = load_state_dict_file(_save(wrap(state), tmp_path / "w.pt"))
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], state[k]) for k in state)


def test_safetensors_files(tmp_path):
    state = {k: v.contiguous() for k, v in _net().state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    assert torch.equal(load_state_dict_file(tmp_path / "w.safetensors")["2.weight"], state["2.weight"])


def test_weights_map_renames_prefixes_longest_first(tmp_path):
    state = {"encoder.stem.w": torch.ones(1), "encoder.stem.x.w": torch.zeros(1), "other": torch.ones(2)}
    path = _save(state, tmp_path / "w.pt")
    renamed = load_state_dict_file(path, {"encoder.": "", "encoder.stem.x.": "extra."})
    assert set(renamed) == {"stem.w", "extra.w", "other"}
    with pytest.raises(WeightsError, match=r"'decoder\.'.*match no key"):
        load_state_dict_file(path, {"decoder.": ""})


@pytest.mark.parametrize("content, message", [(None, "not found"), ([1, 2], "holds a list"),
                                              ({"epoch": 3}, "holds no tensors"),
                                              (nn.Linear(2, 2), "cannot read")])
def test_unreadable_files_are_weights_errors(tmp_path, content, message):
    path = tmp_path / "w.pt"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=message):
        load_state_dict_file(path)


# --- loading into modules ---------------------------------------------------------------------------

def test_exact_load_copies_every_tensor():
    source, target = _net(), _net()
    report = load_into(target, source.state_dict(), strict=True)
    assert report.complete and len(report.loaded) == len(source.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_missing_and_unexpected_keys_are_warned_and_listed():
    state = _net().state_dict()
    del state["2.bias"]
    state["extra.weight"] = torch.ones(1)
    with pytest.warns(UserWarning, match=r"(?s)1 missing.*2\.bias.*1 in the file but not in the model.*extra"):
        report = load_into(_net(), state)
    assert report.missing == ["2.bias"] and report.unexpected == ["extra.weight"]
    with pytest.raises(WeightsError, match="2.bias"):
        load_into(_net(), state, strict=True)


def test_shape_mismatch_names_key_and_shapes():
    state = _net().state_dict()
    state["2.weight"] = torch.ones(5, 4)
    target = _net()
    before = target.state_dict()["0.weight"].clone()
    with pytest.raises(WeightsError, match=r"2\.weight: file \[5, 4\] vs model \[2, 4\]"):
        load_into(target, state)
    assert torch.equal(target.state_dict()["0.weight"], before)


def test_ignored_prefixes_are_dropped_silently():
    state = _net().state_dict()
    state["fc.weight"] = torch.ones(7, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_into(_net(), state, ignore_prefixes=("fc.",))
    assert report.ignored == ["fc.weight"] and report.complete


def test_rename_by_order_checks_count_and_shapes():
    reference = _net().state_dict()
    source = {f"other_{i}": v.clone() for i, v in enumerate(reference.values())}
    assert list(rename_by_order(source, reference)) == list(reference)
    with pytest.raises(WeightsError, match="cannot be matched by order"):
        rename_by_order(dict(list(source.items())[:-1]), reference)
    source["other_0"] = torch.ones(9)
    with pytest.raises(WeightsError, match=r"'other_0' \[9\].*'0\.weight' \[4, 3\]"):
        rename_by_order(source, reference)


# --- weights: PATH through the factories --------------------------------------------------------

def test_factory_loads_a_renamed_local_file(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18", num_classes=1000)
    state = {f"encoder.{k}": v for k, v in source.state_dict().items()}
    path = _save({"state_dict": state, "epoch": 7}, tmp_path / "resnet18.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = BACKBONES.create("resnet18", weights=str(path), weights_map={"encoder.": ""})
    assert backbone.weights_source == f"local file ({path})"
    loaded = backbone.body.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items() if not k.startswith("fc."))


@pytest.mark.parametrize("target, message", [("efficientnet_b0", r"conv1\.weight"),
                                             ("resnet50", r"layer1\.0\.conv1\.weight: file \[64, 64, 3, 3\]")])
def test_checkpoint_of_another_architecture_names_keys(tmp_path, target, message):
    path = _save(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(WeightsError, match=rf"(?s)another architecture.*{message}"):
        BACKBONES.create(target, weights=str(path))


@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory) -> Path:
    """A ResNet-34 state dict (random init): every ResNet-18 key is in it with its shape, plus 56 more blocks' tensors."""
    torch.manual_seed(0)
    return _save(timm.create_model("resnet34", num_classes=0).state_dict(),
                 tmp_path_factory.mktemp("w") / "resnet34.pth")


def test_weights_of_a_larger_relative_are_refused_with_the_left_over_keys(resnet34_file):
    with pytest.raises(WeightsError) as caught:
        BACKBONES.create("resnet18", weights=str(resnet34_file))
    message = str(caught.value)
    assert "another architecture" in message and "in the file but not in the model" in message
    assert "layer1.2.conv1.weight" in message and "weights_strict: false" in message
    assert "missing from the file" not in message and "different shape" not in message


def test_weights_strict_false_loads_what_fits_and_reports_the_rest(resnet34_file):
    source = torch.load(resnet34_file, weights_only=True)
    with pytest.warns(UserWarning, match="in the file but not in the model"):
        backbone = BACKBONES.create("resnet18", weights=str(resnet34_file), weights_strict=False)
    report = backbone.weights_report
    own = backbone.body.state_dict()
    assert report["missing"] == [] and report["mismatched"] == [] and report["loaded"] == len(own)
    assert sorted(report["unexpected"]) == sorted(set(source) - set(own))
    assert all(torch.equal(tensor, source[key]) for key, tensor in own.items())


def test_weights_strict_false_skips_tensors_of_another_shape(tmp_path):
    state = timm.create_model("resnet18", num_classes=0).state_dict()
    state["conv1.weight"] = torch.ones(64, 3, 5, 5)
    del state["layer4.1.bn2.bias"]
    path = _save(state, tmp_path / "resnet18.pth")
    with pytest.raises(WeightsError, match=r"(?s)1 missing.*layer4\.1\.bn2\.bias.*conv1\.weight: file \[64, 3, 5, 5\]"):
        BACKBONES.create("resnet18", weights=str(path))
    with pytest.warns(UserWarning):
        report = BACKBONES.create("resnet18", weights=str(path), weights_strict=False).weights_report
    assert report["missing"] == ["layer4.1.bn2.bias"]
    assert report["mismatched"] == ["conv1.weight: file [64, 3, 5, 5] vs model [64, 3, 7, 7]"]


def test_pretrained_and_weights_together_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        BACKBONES.create("resnet18", pretrained=True, weights=str(tmp_path / "w.pt"))


# --- pretrained weights offline ---------------------------------------------------------------------

def test_maxvit_offline_without_cache_says_how_to_proceed(torch_home, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no route to host")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as caught:
        BACKBONES.create("maxvit_t", pretrained=True)
    message = str(caught.value)
    assert str(torch_home / "hub" / "checkpoints" / MAXVIT_FILE) in message
    assert MaxVit_T_Weights.IMAGENET1K_V1.url in message
    assert "weights: PATH" in message and "pretrained: false" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_maxvit_offline_through_the_real_hub_client(torch_home):
    with pytest.raises(WeightsError, match="network disabled in tests"):
        BACKBONES.create("maxvit_t", pretrained=True)
    assert hub_cache_file(MaxVit_T_Weights.IMAGENET1K_V1.url) == torch_home / "hub" / "checkpoints" / MAXVIT_FILE


def test_maxvit_pretrained_from_the_hub_cache(torch_home):
    from torchvision.models.maxvit import MaxVit
    torch.manual_seed(3)
    full = MaxVit(input_size=(224, 224), stem_channels=64, block_channels=[64, 128, 256, 512],
                  block_layers=[2, 2, 5, 2], head_dim=32, stochastic_depth_prob=0.2, partition_size=7)
    cached = hub_cache_file(MaxVit_T_Weights.IMAGENET1K_V1.url)
    cached.parent.mkdir(parents=True)
    torch.save(full.state_dict(), cached)
    backbone = BACKBONES.create("maxvit_t", pretrained=True, input_size=64, partition_size=2)
    assert backbone.weights_source == "imagenet (torchvision)"
    assert torch.equal(backbone.body.classifier[3].weight, full.classifier[3].weight)
    assert torch.equal(backbone.body.blocks[2].layers[4].layers[1].attn_layer[1].to_qkv.weight,
                       full.blocks[2].layers[4].layers[1].attn_layer[1].to_qkv.weight)


def test_timm_offline_without_cache_says_how_to_proceed(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsError, match=r"(?s)timm model 'resnet18'.*models--timm--resnet18.*weights: PATH"):
        BACKBONES.create("resnet18", pretrained=True)


def test_weights_file_report_for_direct_use(tmp_path):
    source = _net()
    report = load_weights_file(_net(), _save(source.state_dict(), tmp_path / "w.pt"))
    assert report.complete and "loaded 9 tensors" in report.summary()
