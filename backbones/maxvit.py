"""torchvision MaxViT-T, the reference backbone: ImageNet weights, first block frozen, dropout 0.5.

MaxViT attends within fixed windows and grids (``partition_size`` 7 for the ImageNet weights), so
every feature map — the image size divided by 2, 4, 8, 16 and 32 — must be divisible by the partition
size: with 7, input sizes 224, 448, 672... A smaller ``partition_size`` allows smaller inputs (e.g. 2 for 64 px,
3 for 96 px); pretrained relative-position tables are then resized by bicubic interpolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import MaxVit_T_Weights
from torchvision.models.maxvit import MaxVit

from benchkit.models.backbone import Backbone
from benchkit.errors import ConfigError
from benchkit.registry import register_backbone
from benchkit.models.weights import check_weights_options, download_state_dict, load_into, local_weights

from .torchvision_models import preprocessing

PRETRAINED_PARTITION = 7
_CLASSIFIER = "classifier.5"
_ARCH = dict(stem_channels=64, block_channels=[64, 128, 256, 512], block_layers=[2, 2, 5, 2], head_dim=32)


def feature_sizes(input_size: int) -> list[int]:
    """Feature-map sides after the stem and after each of the 4 blocks (each halves, rounding up)."""
    sizes, size = [], input_size
    for _ in range(5):
        size = (size - 1) // 2 + 1
        sizes.append(size)
    return sizes


def valid_partition_sizes(input_size: int) -> list[int]:
    """Partition sizes dividing every block's input and attention grid for this image size."""
    sizes = feature_sizes(input_size)
    return [p for p in range(1, sizes[-1] + 1) if all(s % p == 0 for s in sizes)]


def _check_sizes(input_size: int, partition_size: int) -> None:
    if partition_size in valid_partition_sizes(input_size):
        return
    raise ConfigError(
        f"maxvit_t: input_size {input_size} gives feature maps {feature_sizes(input_size)}, not all "
        f"divisible by partition_size {partition_size}. With partition_size {partition_size} use an input "
        f"size multiple of {32 * partition_size} (e.g. {32 * partition_size}, {64 * partition_size}); for "
        f"input_size {input_size} valid partition sizes are {valid_partition_sizes(input_size)} "
        f"(backbone.options.partition_size)")


def _default_partition(input_size: int) -> int:
    fitting = [p for p in valid_partition_sizes(input_size) if p <= PRETRAINED_PARTITION]
    return max(fitting) if fitting else PRETRAINED_PARTITION


def resize_relative_position_tables(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict:
    """Fit pretrained relative-position bias tables to the model's partition size (bicubic resize).

    The index buffers are replaced by the model's own, which depend only on the partition size.
    """
    own = model.state_dict()
    resized = {}
    for key, tensor in state_dict.items():
        if key.endswith("relative_position_index") and key in own and own[key].shape != tensor.shape:
            tensor = own[key]
        if key.endswith("relative_position_bias_table") and key in own and own[key].shape != tensor.shape:
            old, new = int(round(tensor.shape[0] ** 0.5)), int(round(own[key].shape[0] ** 0.5))
            grid = tensor.T.reshape(1, -1, old, old)
            grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
            tensor = grid.reshape(-1, new * new).T.contiguous()
        resized[key] = tensor
    return resized


@register_backbone("maxvit_t")
def maxvit_t(pretrained: bool = False, weights: str | None = None, weights_map: dict[str, str] | None = None,
             weights_strict: bool = True, drop_path: float | None = None, input_size: int = 224, partition_size: int | None = None,
             **kwargs) -> Backbone:
    """torchvision MaxViT-T whose last Linear is an Identity, so the body ends with pooling, LayerNorm,
    Linear(512, 512) and Tanh (512 features); stem ``stem``, 4 stages ``blocks``.

    ``drop_path`` sets ``stochastic_depth_prob`` (default 0.2, rising linearly over the layers);
    other options go to ``torchvision.models.maxvit.MaxVit``. Without ``partition_size``, the
    pretrained 7 is used where the input size allows it, else the largest valid size below 7.
    """
    check_weights_options(pretrained, weights)
    if partition_size is None:
        partition_size = _default_partition(input_size)
    _check_sizes(input_size, partition_size)
    pretrained_state = None
    if pretrained and weights is None:
        pretrained_state = download_state_dict(
            MaxVit_T_Weights.IMAGENET1K_V1.url, what="torchvision maxvit_t (MaxVit_T_Weights.IMAGENET1K_V1)")
    depth = 0.2 if drop_path is None else drop_path
    try:
        body = MaxVit(input_size=(input_size, input_size), partition_size=partition_size,
                      stochastic_depth_prob=depth, **_ARCH, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"maxvit_t rejects an option ({exc}); check backbone.options") from None
    body.classifier[-1] = nn.Identity()
    source, report = "random", None
    if weights is not None:
        source, report = local_weights(body, weights, weights_map, ignore_prefixes=(f"{_CLASSIFIER}.",),
                                       strict=weights_strict)
    elif pretrained_state is not None:
        load_into(body, resize_relative_position_tables(pretrained_state, body), strict=True,
                  ignore_prefixes=(f"{_CLASSIFIER}.",), source="MaxVit_T_Weights.IMAGENET1K_V1")
        source = "imagenet (torchvision)"
    prep = preprocessing(MaxVit_T_Weights.IMAGENET1K_V1)
    return Backbone(body, 512, stem=[body.stem], stages=list(body.blocks),
                    mean=prep["mean"], std=prep["std"], input_size=input_size,
                    default_freeze={"modules": ["blocks.0"]}, default_dropout=0.5, weights_source=source,
                    weights_report=report)


maxvit_t.weight_sources = "pretrained: torchvision cache (IMAGENET1K_V1); weights: PATH"
