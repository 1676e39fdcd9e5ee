"""A grading model is a backbone plus a head, built from a run's model config."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.config.schema import BackboneConfig, ModelConfig
from benchkit.errors import BenchkitError, ConfigError
from benchkit.models.freezing import apply_freeze, keep_frozen_in_eval, set_dropout
from benchkit.models.head import Head
from benchkit.registry import BACKBONES, HEADS
from benchkit.memo import memoized


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


def architecture(config: ModelConfig) -> ModelConfig:
    """``config`` without its weights (no pretrained download, no weights file): the shapes only."""
    return config.model_copy(update={"backbone": _without_weights(config.backbone)})


def _without_weights(config: BackboneConfig) -> BackboneConfig:
    return config.model_copy(update={"pretrained": False, "weights": None, "weights_map": None})


def backbone_input_size(config: BackboneConfig) -> int:
    """The input size a backbone prefers, from its architecture alone (on the meta device where it can).

    Built once per process for each architecture: every run without ``data.image_size`` asks.
    """
    return _architecture_input_size(_without_weights(config).model_dump_json())


@memoized("input-sizes", maxsize=64)
def _architecture_input_size(arch_json: str) -> int:
    arch = BackboneConfig.model_validate_json(arch_json)
    try:
        with torch.device("meta"):
            return create_backbone(arch).input_size
    except BenchkitError:
        raise
    except Exception:  # a plugin that cannot be built on the meta device
        return create_backbone(arch).input_size


def model_for(spec, *, weights: bool = True) -> GraderModel:
    """The model of a resolved run (``spec.build`` filled), drawn from the run's seed.

    ``weights=False`` builds the architecture only (no weights read), leaving the random state as it was:
    for counting parameters and for loading a trained run's own weights.
    """
    if spec.build is None:
        raise ValueError(f"run {spec.run_id}: build inputs not resolved (see benchkit.training.build_inputs)")
    if weights:
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, spec.build.num_classes, spec.build.input_size)
        model.head.set_class_weights(spec.build.class_weights)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return build_model(architecture(spec.model), spec.build.num_classes, spec.build.input_size)


@dataclass(frozen=True)
class BuiltModel:
    """A run's model built ahead of the run (by the experiment's input check), with the torch random state its
    build left: the run that :meth:`take` s it goes on exactly as if it had built the model itself."""

    model: GraderModel
    rng_after: torch.Tensor

    def take(self) -> GraderModel:
        torch.set_rng_state(self.rng_after)
        return self.model


def build_for(spec) -> BuiltModel:
    """The run's model (:func:`model_for`), built without disturbing this process's random state."""
    with torch.random.fork_rng(devices=[]):
        model = model_for(spec)
        return BuiltModel(model, torch.get_rng_state())
