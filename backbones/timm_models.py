"""timm backbones: a curated set of well-known models and the generic ``timm:<model name>`` adapter.

Features come from timm itself (``num_classes=0`` gives pooled pre-logits features); mean, std and
input size from the model's ``pretrained_cfg``; stages from timm's ``feature_info`` (blocks between
two feature points form one stage), except ViT, whose 12 blocks form 4 stages of 3.
"""

from __future__ import annotations

import difflib

import timm
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.errors import ConfigError, WeightsError
from benchkit.registry import register_backbone
from benchkit.models.weights import check_weights_options, hub_cache_file, local_weights

from ._parts import children_before, group, own_parameters

CURATED = {
    "resnet18": "ResNet-18: stem conv1/bn1, stages layer1..4.",
    "resnet50": "ResNet-50: stem conv1/bn1, stages layer1..4.",
    "efficientnet_b0": "EfficientNet-B0: stem conv_stem/bn1, 5 stages of blocks (one per resolution).",
    "convnext_tiny": "ConvNeXt-T: stem, stages.0..3.",
    "mobilenetv3_large_100": "MobileNetV3-Large: stem conv_stem/bn1, 5 stages of blocks (one per resolution).",
    "vit_small_patch16_224": ("ViT-S/16: stem patch_embed + class token/position embedding, 4 stages of 3 "
                              "blocks; any input size divisible by 16 (dynamic position embedding) unless "
                              "input_size fixes one."),
}


def timm_backbone(arch: str, *, pretrained: bool = False, weights: str | None = None,
                  weights_map: dict[str, str] | None = None, weights_strict: bool = True,
                  drop_path: float | None = None,
                  input_size: int | None = None, stage_groups: int | None = None, **kwargs) -> Backbone:
    """A :class:`Backbone` around ``timm.create_model(arch, num_classes=0, ...)``.

    ``input_size`` becomes the model's ``img_size`` where it has one (ViT-like models) and the
    backbone's preferred input size everywhere. ``stage_groups`` splits ``blocks`` into that many
    equal stages instead of following ``feature_info``. Other options go to ``timm.create_model``.
    """
    check_weights_options(pretrained, weights)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"timm has no model {arch!r}{hint}")
    model = _create(arch, pretrained, drop_path, input_size, kwargs)
    stem, stages = (_grouped_blocks(model, stage_groups) if stage_groups else timm_stem_and_stages(model))
    source, report = "random", None
    if weights is not None:
        source, report = local_weights(model, weights, weights_map, ignore_prefixes=classifier_prefixes(model),
                                       strict=weights_strict)
    elif pretrained:
        source = f"pretrained (timm {_tagged_name(model.pretrained_cfg)})"
    data = timm.data.resolve_model_data_config(model)
    num_features = getattr(model, "head_hidden_size", None) or model.num_features
    return Backbone(model, num_features, stem=stem, stages=stages, mean=data["mean"], std=data["std"],
                    input_size=input_size or data["input_size"][-1], weights_source=source, weights_report=report)


def _create(arch: str, pretrained: bool, drop_path: float | None, input_size: int | None, kwargs: dict):
    args = dict(kwargs, num_classes=0)
    if drop_path is not None:
        args["drop_path_rate"] = drop_path
    if input_size is not None and "img_size" not in args:
        args["img_size"] = input_size
    try:
        try:
            return timm.create_model(arch, pretrained=pretrained, **args)
        except TypeError as exc:
            if input_size is None or "img_size" not in str(exc) or "img_size" in kwargs:
                raise
            args.pop("img_size")
            return timm.create_model(arch, pretrained=pretrained, **args)
    except TypeError as exc:
        raise ConfigError(f"timm model {arch!r} rejects an option ({exc}); "
                          f"check backbone.options and drop_path") from None
    except (OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise WeightsError(_offline_help(arch, exc)) from None


def _tagged_name(cfg) -> str:
    cfg = cfg if isinstance(cfg, dict) else cfg.to_dict()
    tag = cfg.get("tag")
    return f"{cfg.get('architecture')}.{tag}" if tag else str(cfg.get("architecture"))


def _offline_help(arch: str, exc: Exception) -> str:
    cfg = timm.models.get_pretrained_cfg(arch)
    name = _tagged_name(cfg) if cfg is not None else arch
    lines = [f"cannot get the pretrained weights of timm model {arch!r} ({type(exc).__name__}: "
             f"{str(exc).splitlines()[0] if str(exc) else ''}).",
             "This machine may be offline and the weights are not cached. To proceed, either"]
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub import constants
        folder = "models--" + cfg.hf_hub_id.replace("/", "--")
        lines.append(f"  - on a machine with internet run: python -c \"import timm; timm.create_model("
                     f"'{name}', pretrained=True)\"\n    and copy the folder {folder} of its Hugging Face "
                     f"cache into {constants.HF_HUB_CACHE} (set HF_HUB_OFFLINE=1 to skip network retries), or")
    elif cfg is not None and cfg.url:
        lines.append(f"  - download {cfg.url}\n    and place it as {hub_cache_file(cfg.url)}, or")
    lines.append("  - set 'weights: PATH' to a local state dict of this model, or")
    lines.append("  - set 'pretrained: false' to train from random initialisation.")
    return "\n".join(lines)


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier(s) timm removed with ``num_classes=0``."""
    names = model.pretrained_cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def timm_stem_and_stages(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Stem and stages from ``feature_info``: each stage runs up to one feature point.

    Feature points without parameters or inside a ``stem`` belong to the stem; blocks of one
    container between two feature points are grouped. No ``feature_info``: no stages.
    """
    info = getattr(model, "feature_info", None)
    names = [f["module"] for f in info] if isinstance(info, list) else []
    names = [n for n in names if not n.split(".")[0].startswith("stem")
             and any(True for _ in model.get_submodule(n).parameters())]
    if not names:
        return own_parameters(model), []
    members: list[list[nn.Module]] = []
    last_parent, last_index = None, -1
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if leaf.isdigit() and isinstance(parent, (nn.Sequential, nn.ModuleList)):
            start = last_index + 1 if parent_name == last_parent else 0
            members.append(list(parent)[start:int(leaf) + 1])
            last_parent, last_index = parent_name, int(leaf)
        else:
            members.append([model.get_submodule(name)])
            last_parent, last_index = None, -1
    if last_parent is not None:
        members[-1] += list(model.get_submodule(last_parent))[last_index + 1:]
    stem = children_before(model, names[0]) + own_parameters(model)
    return stem, [group(m) for m in members]


def _grouped_blocks(model: nn.Module, count: int) -> tuple[list[nn.Module], list[nn.Module]]:
    blocks = list(model.blocks)
    if len(blocks) % count:
        raise ConfigError(f"cannot split {len(blocks)} blocks into {count} equal stages")
    size = len(blocks) // count
    stages = [group(blocks[i:i + size]) for i in range(0, len(blocks), size)]
    return children_before(model, "blocks") + own_parameters(model), stages


def _register_curated(arch: str, doc: str, **defaults):
    def factory(pretrained: bool = False, weights: str | None = None, weights_map: dict[str, str] | None = None,
                weights_strict: bool = True, drop_path: float | None = None, **kwargs) -> Backbone:
        options = {**defaults, **kwargs}
        if "input_size" in options or "img_size" in options:
            options.pop("dynamic_img_size", None)
        return timm_backbone(arch, pretrained=pretrained, weights=weights, weights_map=weights_map,
                             weights_strict=weights_strict, drop_path=drop_path, **options)

    factory.__name__ = factory.__qualname__ = arch
    factory.__doc__ = f"{doc} (timm {arch}; mean/std/size from its pretrained_cfg)"
    factory.weight_sources = "pretrained: timm hub cache; weights: PATH"
    return register_backbone(arch)(factory)


_VIT_DEFAULTS = {"stage_groups": 4, "dynamic_img_size": True}
for _arch, _doc in CURATED.items():
    _register_curated(_arch, _doc, **(_VIT_DEFAULTS if _arch.startswith("vit_") else {}))
del _arch, _doc


@register_backbone("timm", prefix=True)
def timm_model(full_name: str, pretrained: bool = False, weights: str | None = None,
               weights_map: dict[str, str] | None = None, weights_strict: bool = True,
               drop_path: float | None = None, **kwargs) -> Backbone:
    """Any timm model as ``timm:<model name>``; stages guessed from its ``feature_info``."""
    arch = full_name.partition(":")[2]
    return timm_backbone(arch, pretrained=pretrained, weights=weights, weights_map=weights_map,
                         weights_strict=weights_strict, drop_path=drop_path, **kwargs)
