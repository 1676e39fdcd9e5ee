"""Helpers that describe a network's stem and stages as modules, for the backbone plugins."""

from __future__ import annotations

from typing import Sequence

from torch import nn


class ParameterGroup(nn.Module):
    """Holds references to parameters that belong to no submodule (ViT's class token, position embedding).

    Listing one in a backbone's stem lets freezing reach them; the parameters stay the body's own.
    """

    def __init__(self, owner: nn.Module, names: Sequence[str]):
        super().__init__()
        for name in names:
            self.register_parameter(name.replace(".", "_"), owner.get_parameter(name))


def group(modules: Sequence[nn.Module]) -> nn.Module:
    """One module standing for consecutive blocks: the block itself, or a Sequential over them."""
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def own_parameters(body: nn.Module, names: Sequence[str] | None = None) -> list[nn.Module]:
    """``[ParameterGroup]`` of the body's direct parameters (or the named ones), or ``[]`` if none."""
    if names is None:
        names = [n for n, _ in body.named_parameters(recurse=False)]
    return [ParameterGroup(body, names)] if names else []


def children_before(body: nn.Module, first_stage_name: str) -> list[nn.Module]:
    """Top-level children of ``body`` that come before the child holding ``first_stage_name``."""
    top = first_stage_name.split(".")[0]
    stem = []
    for name, child in body.named_children():
        if name == top:
            return stem
        stem.append(child)
    raise ValueError(f"{first_stage_name!r} is not inside the body")


def replace_module(body: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` at dotted path ``name`` inside ``body``."""
    parent_name, _, leaf = name.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    setattr(parent, leaf, new)
