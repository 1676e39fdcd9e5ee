"""A grading model is a backbone plus a head, built from a run's model config."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.config import ModelConfig
from benchkit.errors import ConfigError
from benchkit.models.freezing import apply_freeze, keep_frozen_in_eval, parameter_counts, set_dropout
from benchkit.models.head import Head
from benchkit.registry import BACKBONES, HEADS


class GraderModel(nn.Module):
    """``head(backbone(images))``; frozen backbone parts keep their norm statistics in training.

    A fully frozen backbone is a fixed feature extractor and stays in eval mode (no dropout or
    drop-path), so its features are the same in training and evaluation and can be cached.
    """

    def __init__(self, backbone: Backbone, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def group_matcher(self, coarse: bool = False):
        """timm's layer grouping (used by layer-wise lr decay): stem 0, stage i i+1, head last.

        Backbone parameters outside the stem and the stages (a final conv, a norm) join the layer
        before them (the stem) or, after the first stage, the last stage. ``coarse`` is ignored.
        """
        stages = getattr(self.backbone, "stages", [])
        layer_of = {id(p): 0 for part in getattr(self.backbone, "stem", []) for p in part.parameters()}
        layer_of.update({id(p): i + 1 for i, stage in enumerate(stages) for p in stage.parameters()})
        head = {id(p) for p in self.head.parameters()}
        layers, current = {}, 0
        for name, param in self.named_parameters(remove_duplicate=False):
            current = len(stages) + 1 if id(param) in head else layer_of.get(id(param), current)
            layers[name] = current
        return lambda name: layers[name]

    def train(self, mode: bool = True) -> "GraderModel":
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self.backbone)
            if not any(p.requires_grad for p in self.backbone.parameters()):
                self.backbone.eval()
        return self


def create_backbone(config, input_size: int | None = None) -> Backbone:
    """Build, freeze and set dropout of a registered backbone from a ``BackboneConfig``.

    ``input_size`` (the run's ``data.image_size``) reaches factories that take an ``input_size``
    option (models built for one size, like MaxViT), unless the options already set it.
    """
    options = dict(config.options)
    if input_size is not None and "input_size" not in options and _accepts(config.name, "input_size"):
        options["input_size"] = input_size
    if config.pretrained:
        options["pretrained"] = True
    if config.weights is not None:
        options["weights"] = str(config.weights)
    if config.weights_map:
        options["weights_map"] = config.weights_map
    if not config.weights_strict:
        options["weights_strict"] = False
    if config.drop_path is not None:
        options["drop_path"] = config.drop_path
    try:
        backbone = BACKBONES.create(config.name, **options)
    except TypeError as exc:
        raise ConfigError(f"backbone {config.name!r}: {exc} (check backbone.options)") from None
    freeze = config.freeze.model_dump() if hasattr(config.freeze, "model_dump") else config.freeze
    try:
        apply_freeze(backbone, freeze)
    except ValueError as exc:
        raise ConfigError(f"backbone {config.name!r}, key 'freeze': {exc}") from None
    set_dropout(backbone, config.dropout)
    return backbone


def create_head(name: str, in_features: int, num_classes: int, options: dict) -> Head:
    """Build a registered head; unknown options are a ConfigError naming the valid ones."""
    cls = HEADS.get(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "in_features",
                                                                                   "num_classes")]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ConfigError(f"head {name!r}: unknown option(s) {unknown} (valid: {', '.join(accepted)})")
    try:
        return cls(in_features, num_classes, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"head {name!r}: {exc}") from None


def _accepts(backbone_name: str, option: str) -> bool:
    factory = BACKBONES.get(backbone_name)
    return option in inspect.signature(factory).parameters


def build_model(config: ModelConfig, num_classes: int, input_size: int | None = None) -> GraderModel:
    """The backbone and head of one model entry, ready to train."""
    backbone = create_backbone(config.backbone, input_size)
    head = create_head(config.head.name, backbone.num_features, num_classes, config.head.options)
    return GraderModel(backbone, head)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts."""
    return parameter_counts(model)
