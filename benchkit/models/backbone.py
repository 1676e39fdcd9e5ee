"""The backbone contract: a feature extractor with known stages, preprocessing and size.

A backbone factory (registered with ``@register_backbone``) returns a :class:`Backbone`. The
wrapper keeps the original network as ``body`` (so state-dict keys stay the library's own, prefixed
``body.``), maps images ``(B, 3, H, W)`` to pooled features ``(B, num_features)``, and lists its
``stem`` and ordered ``stages`` so freezing works the same way for every model.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A pooled-feature extractor.

    Args:
        body: the network; its parameters are this module's parameters.
        num_features: width of the pooled feature vector.
        stem: modules of ``body`` before the first stage (frozen with any ``freeze: N > 0``).
        stages: ordered stage modules of ``body``.
        forward_features: ``f(body, images) -> (B, num_features)``; default ``body(images)``.
        mean: the normalisation mean the weights were trained with.
        std: the normalisation std the weights were trained with.
        input_size: the input size the weights were trained at.
        default_freeze (int | str | dict): the freezing applied when a run does not say.
        default_dropout: the dropout applied when a run does not say.
        weights_source: where the weights came from (``random``, ``pretrained``, a file).
        weights_report: what loading a local weights file skipped (``LoadReport.as_dict``), if one was loaded.
    """

    def __init__(self, body: nn.Module, num_features: int, *, stem: Sequence[nn.Module] = (),
                 stages: Sequence[nn.Module] = (), forward_features: Callable | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 input_size: int = 224, default_freeze=0, default_dropout: float | None = None,
                 weights_source: str = "random", weights_report: dict | None = None):
        super().__init__()
        self.body = body
        self.num_features = num_features
        self._stem = list(stem)
        self._stages = list(stages)
        self._forward_features = forward_features
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.input_size = int(input_size)
        self.default_freeze = default_freeze
        self.default_dropout = default_dropout
        self.weights_source = weights_source
        self.weights_report = weights_report

    @property
    def stem(self) -> list[nn.Module]:
        return self._stem

    @property
    def stages(self) -> list[nn.Module]:
        return self._stages

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._forward_features is None:
            return self.body(images)
        return self._forward_features(self.body, images)
