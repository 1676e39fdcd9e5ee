"""The generic ``torchvision:<name>`` adapter: any torchvision classification model as a backbone.

The classifier's last Linear becomes an Identity, so the body returns pooled features; mean, std and
input size come from the model's default weights' transforms; stages are guessed from the usual
layouts (``layer1..``, ``features``, ``stem``/``blocks``, ``encoder.layers``).
"""

from __future__ import annotations

import difflib

import torchvision
from torch import nn

from benchkit.models.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from benchkit.errors import ConfigError
from benchkit.registry import register_backbone
from benchkit.models.weights import check_weights_options, download_state_dict, load_into, local_weights

from ._parts import children_before, own_parameters, replace_module

_CLASSIFIER_NAMES = ("fc", "classifier", "heads", "head")


def default_weights(name: str):
    """The DEFAULT weights enum member of torchvision model ``name``, or None if it has none."""
    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def preprocessing(weights) -> dict:
    """``mean``, ``std``, ``input_size`` from a weights enum's transforms, else ImageNet defaults."""
    if weights is None:
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": 224}
    transform = weights.transforms()
    crop = transform.crop_size
    return {"mean": tuple(transform.mean), "std": tuple(transform.std),
            "input_size": int(crop[0] if isinstance(crop, (list, tuple)) else crop)}


def remove_classifier(body: nn.Module) -> tuple[str, int]:
    """Replace the last Linear of ``fc``/``classifier``/``heads``/``head`` by Identity.

    Returns the removed Linear's dotted name and its ``in_features`` (the feature width).
    """
    for attr in _CLASSIFIER_NAMES:
        module = getattr(body, attr, None)
        if module is None:
            continue
        linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            name, linear = linears[-1]
            full = f"{attr}.{name}" if name else attr
            replace_module(body, full, nn.Identity())
            return full, linear.in_features
    raise ConfigError(f"cannot find a Linear classifier ({', '.join(_CLASSIFIER_NAMES)}) in "
                      f"{type(body).__name__}; register a backbone for it instead")


def guess_stem_and_stages(body: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Stem and stages for the common torchvision layouts; ``([], [])`` when none applies."""
    layers = [n for n, _ in body.named_children() if n.startswith("layer") and n[5:].isdigit()]
    if layers:
        return children_before(body, layers[0]), [getattr(body, n) for n in layers]
    if isinstance(getattr(body, "features", None), nn.Sequential) and len(body.features) > 1:
        return [body.features[0]], list(body.features)[1:]
    if hasattr(body, "stem") and isinstance(getattr(body, "blocks", None), (nn.Sequential, nn.ModuleList)):
        return [body.stem], list(body.blocks)
    encoder = getattr(body, "encoder", None)
    if encoder is not None and isinstance(getattr(encoder, "layers", None), nn.Sequential):
        stem = children_before(body, "encoder") + own_parameters(body) + own_parameters(encoder)
        return stem, list(encoder.layers)
    return [], []


@register_backbone("torchvision", prefix=True)
def torchvision_model(full_name: str, pretrained: bool = False, weights: str | None = None,
                      weights_map: dict[str, str] | None = None, weights_strict: bool = True,
                      drop_path: float | None = None, **kwargs) -> Backbone:
    """Any torchvision classification model as ``torchvision:<name>``; ``pretrained`` uses its DEFAULT weights."""
    check_weights_options(pretrained, weights)
    name = full_name.partition(":")[2]
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"torchvision has no classification model {name!r}{hint}")
    if drop_path is not None:
        kwargs["stochastic_depth_prob"] = drop_path
    enum = default_weights(name)
    if pretrained and enum is None:
        raise ConfigError(f"torchvision model {name!r} has no pretrained weights")
    pretrained_state = download_state_dict(enum.url, what=f"torchvision {name} ({enum})") if pretrained else None
    try:
        body = torchvision.models.get_model(name, weights=None, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"torchvision model {name!r} rejects an option ({exc}); "
                          f"check backbone.options and drop_path") from None
    removed, num_features = remove_classifier(body)
    source, report = "random", None
    if weights is not None:
        source, report = local_weights(body, weights, weights_map, ignore_prefixes=(f"{removed}.",),
                                       strict=weights_strict)
    elif pretrained_state is not None:
        load_into(body, pretrained_state, strict=True, ignore_prefixes=(f"{removed}.",), source=str(enum))
        source = f"imagenet (torchvision {enum})"
    stem, stages = guess_stem_and_stages(body)
    return Backbone(body, num_features, stem=stem, stages=stages, **preprocessing(enum), weights_source=source,
                    weights_report=report)
