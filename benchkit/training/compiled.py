"""``train.compile``: the training forward through ``torch.compile``, optionally replayed as CUDA graphs.

``true`` is torch's default mode; ``reduce-overhead`` (and ``max-autotune``) record the step's kernels
as CUDA graphs and replay them, which removes the per-kernel launch cost that bounds small-batch
training on a fast GPU. Graphs need static shapes, so a compiled run drops the ragged last training
batch of each epoch (one batch shape, one graph); evaluation stays eager.
"""

from __future__ import annotations

import torch
from torch import nn

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_mode(setting: bool | str) -> str | None:
    """The ``torch.compile`` mode of ``train.compile`` (None: eager)."""
    if setting is False:
        return None
    return "default" if setting is True else setting


def compiled_forward(model: nn.Module, mode: str | None) -> nn.Module:
    """``model`` itself when eager, else its compiled wrapper (sharing the parameters)."""
    return model if mode is None else torch.compile(model, mode=mode)


def replays_cuda_graphs(mode: str | None, device: torch.device) -> bool:
    """Whether each step must mark a new CUDA-graph iteration (its outputs are overwritten by the next)."""
    return mode in CUDA_GRAPH_MODES and device.type == "cuda"
