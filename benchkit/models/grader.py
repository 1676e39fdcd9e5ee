"""A grading model is a backbone plus a head, built from a run's model config."""

from __future__ import annotations

import inspect
import json
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.config.schema import BackboneConfig, BuildInputs, ModelConfig
from benchkit.errors import BenchkitError, ConfigError
from benchkit.models.freezing import apply_freeze, keep_frozen_in_eval, set_dropout
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


@lru_cache(maxsize=64)
def _architecture_input_size(arch_json: str) -> int:
    arch = BackboneConfig.model_validate_json(arch_json)
    try:
        with torch.device("meta"):
            return create_backbone(arch).input_size
    except BenchkitError:
        raise
    except Exception:  # a plugin that cannot be built on the meta device
        return create_backbone(arch).input_size


def resolve_build(spec, classes, train_labels=None):
    """``spec`` with its :class:`~benchkit.config.schema.BuildInputs` filled: the class names, the input
    size (``data.image_size``, else the backbone's) and the class weights (``balanced`` needs the
    train levels; without them the weights stay unresolved, as for a dry run)."""
    num_classes = len(classes)
    choice = spec.train.class_weights
    weights = None
    if choice == "balanced" and train_labels is not None:
        counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
        weights = np.where(counts > 0, len(train_labels) / (num_classes * np.maximum(counts, 1)), 0.0).tolist()
    elif isinstance(choice, list):
        if len(choice) != num_classes:
            raise ConfigError(f"train.class_weights has {len(choice)} values for {num_classes} classes")
        weights = [float(w) for w in choice]
    size = spec.data.image_size or backbone_input_size(spec.model.backbone)
    build = BuildInputs(classes=list(classes), input_size=size, class_weights=weights)
    return spec.model_copy(update={"build": build})


_KEPT: dict[str, tuple[GraderModel, torch.Tensor]] = {}


def model_for(spec, *, weights: bool = True) -> GraderModel:
    """The model of a resolved run (``spec.build`` filled), drawn from the run's seed.

    ``weights=False`` builds the architecture only (no weights read): for counting parameters and
    for loading a trained run's own weights. A model kept by :func:`keep_model_for` is handed over
    instead of built again.
    """
    if spec.build is None:
        raise ValueError(f"run {spec.run_id}: build inputs not resolved (see resolve_build)")
    if weights:
        kept = _KEPT.pop(_kept_key(spec), None)
        if kept is not None:
            model, rng_after = kept
            torch.set_rng_state(rng_after)
            return model
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, spec.build.num_classes, spec.build.input_size)
        model.head.set_class_weights(spec.build.class_weights)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return build_model(architecture(spec.model), spec.build.num_classes, spec.build.input_size)


def keep_model_for(spec) -> GraderModel:
    """Build the run's model now (the experiment's input check) and keep it for the run in this process,
    so the model and its pretrained weights are built once per run."""
    with torch.random.fork_rng(devices=[]):
        model = model_for(spec)
        _KEPT[_kept_key(spec)] = (model, torch.get_rng_state())
    return model


def forget_kept_models() -> None:
    """Drop the models no run of this process took (runs that executed elsewhere or were skipped)."""
    _KEPT.clear()


def _kept_key(spec) -> str:
    return json.dumps([spec.model.model_dump(mode="json"), spec.build.model_dump(mode="json"), spec.seed,
                       str(spec.base_dir)], sort_keys=True)
