"""Stage-aware freezing and dropout for backbones.

``freeze`` in an experiment says which part of a :class:`~benchkit.models.backbone.Backbone` keeps its
weights: ``0`` (train all), ``N`` (stem + first N stages), ``"all"`` (linear probe) or
``{"stages": N|"all", "modules": ["blocks.0"], "stem": bool}``. Frozen parts are remembered on the
backbone so that their normalisation statistics stay fixed in training and dropout settings only
reach the trainable parts.
"""

from __future__ import annotations

import difflib

from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from benchkit.models.backbone import Backbone

_FROZEN_ATTR = "_benchkit_frozen"
_FREEZE_KEYS = ("stages", "modules", "stem")


def apply_freeze(backbone: Backbone, freeze=None) -> None:
    """Freeze the parts of ``backbone`` that ``freeze`` names (None: ``backbone.default_freeze``).

    Freezing only ever turns ``requires_grad`` off; it never unfreezes. Raises ValueError naming the
    valid range when N exceeds the stage count, or the valid names when a module does not exist.
    """
    if freeze is None:
        freeze = backbone.default_freeze
    parts = _parts_to_freeze(backbone, freeze)
    recorded = getattr(backbone, _FROZEN_ATTR, [])
    for part in parts:
        part.requires_grad_(False)
        if not any(part is m for m in recorded):
            recorded.append(part)
    setattr(backbone, _FROZEN_ATTR, recorded)


def _parts_to_freeze(backbone: Backbone, freeze) -> list[nn.Module]:
    if freeze is None or (freeze == 0 and not isinstance(freeze, bool)):
        return []
    if freeze == "all":
        return [backbone.body]
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        return _stem_and_stages(backbone, freeze, with_stem=True)
    if isinstance(freeze, dict):
        unknown = [k for k in freeze if k not in _FREEZE_KEYS]
        if unknown:
            raise ValueError(f"unknown freeze key(s) {unknown}; valid keys: {', '.join(_FREEZE_KEYS)}")
        stages = freeze.get("stages") or 0
        count = len(backbone.stages) if stages == "all" else stages
        if not isinstance(count, int) or isinstance(count, bool):
            raise ValueError(f"freeze.stages must be an integer or 'all', got {stages!r}")
        stem = freeze.get("stem")
        parts = _stem_and_stages(backbone, count, with_stem=count > 0 if stem is None else bool(stem))
        return parts + [_named_module(backbone, name) for name in freeze.get("modules") or []]
    raise ValueError(f"freeze must be 0, a number of stages, 'all' or a mapping with keys "
                     f"{', '.join(_FREEZE_KEYS)}; got {freeze!r}")


def _stem_and_stages(backbone: Backbone, count: int, with_stem: bool) -> list[nn.Module]:
    total = len(backbone.stages)
    if total == 0 and count > 0:
        raise ValueError("this backbone lists no stages, so freeze: N > 0 is undefined; use 0, 'all' or "
                         "{modules: [names of body submodules]}")
    if not 0 <= count <= total:
        raise ValueError(f"cannot freeze {count} stages: this backbone has {total} "
                         f"(valid: 0..{total} or 'all')")
    return (list(backbone.stem) if with_stem else []) + list(backbone.stages[:count])


def _named_module(backbone: Backbone, name: str) -> nn.Module:
    try:
        return backbone.body.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in backbone.body.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        top = [n for n, _ in backbone.body.named_children()]
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"freeze module {name!r} does not exist in the backbone; {hint}"
                         f"names are dotted paths inside the body, whose top-level modules are: "
                         f"{', '.join(top)}") from None


def frozen_modules(backbone: nn.Module) -> list[nn.Module]:
    """The submodules frozen by :func:`apply_freeze`, in the order they were frozen."""
    return list(getattr(backbone, _FROZEN_ATTR, []))


def _frozen_ids(module: nn.Module) -> set[int]:
    ids = set()
    for owner in module.modules():
        for part in getattr(owner, _FROZEN_ATTR, []):
            ids.update(id(m) for m in part.modules())
    return ids


def _has_running_stats(module: nn.Module) -> bool:
    return getattr(module, "track_running_stats", False) and getattr(module, "running_mean", None) is not None


def keep_frozen_in_eval(module: nn.Module) -> int:
    """Put norm layers with running statistics in frozen parts back into eval mode.

    Call after ``module.train()``: a norm layer counts as frozen when it lies in a part frozen by
    :func:`apply_freeze` or all its parameters have ``requires_grad`` off. Returns how many layers.
    """
    frozen = _frozen_ids(module)
    count = 0
    for m in module.modules():
        if not _has_running_stats(m):
            continue
        params = list(m.parameters(recurse=False))
        if id(m) in frozen or (params and not any(p.requires_grad for p in params)):
            m.eval()
            count += 1
    return count


def set_dropout(backbone: Backbone, p: float | None = None) -> int:
    """Set ``p`` on every dropout layer in the trainable parts (None: ``backbone.default_dropout``).

    Covers ``nn.Dropout`` and its variants, and the pre-logits dropout rate (``drop_rate``) of a timm
    body. With no rate at all, nothing changes. Returns how many layers were set.
    """
    if p is None:
        p = backbone.default_dropout
    if p is None:
        return 0
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    frozen = _frozen_ids(backbone)
    count = 0
    for m in backbone.modules():
        if isinstance(m, _DropoutNd) and id(m) not in frozen:
            m.p = float(p)
            count += 1
    body = backbone.body
    if id(body) not in frozen and hasattr(body, "forward_head") and isinstance(getattr(body, "drop_rate", None),
                                                                               float):
        body.drop_rate = float(p)
        count += 1
    return count


def dropout_rates(backbone: nn.Module) -> dict[str, float]:
    """``{module name: p}`` of every dropout layer, for reports and tests."""
    return {name: m.p for name, m in backbone.named_modules() if isinstance(m, _DropoutNd)}


def parameter_counts(module: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts (shared parameters counted once)."""
    total = trainable = 0
    for param in module.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return {"total": total, "trainable": trainable, "frozen": total - trainable}
