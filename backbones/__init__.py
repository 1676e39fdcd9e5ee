"""First-party backbone plugins, installed as ``benchkit.backbones``; importing registers them."""

from . import efficientnet_lite, maxvit, timm_models, torchvision_models

__all__ = ["efficientnet_lite", "maxvit", "timm_models", "torchvision_models"]
