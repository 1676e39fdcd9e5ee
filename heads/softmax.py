"""Plain K-way classification: K logits and cross-entropy, ignoring the order of the levels in training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchkit.models.head import Head
from benchkit.models.options import check_number
from benchkit.registry import register_head
from ._common import CategoricalDecoding


@register_head("softmax")
class SoftmaxHead(CategoricalDecoding, Head):
    """K logits, cross-entropy with optional label smoothing; probabilities are the softmax.

    Options: ``label_smoothing`` in ``[0, 1)``, ``decode`` (``argmax`` | ``expected``: rounded
    ``sum_k k p_k``), ``dropout``. The score is always the expected level ``sum_k k p_k``.
    """

    def __init__(self, in_features: int, num_classes: int, label_smoothing: float = 0.0,
                 decode: str = "argmax", dropout: float = 0.0):
        super().__init__(in_features, num_classes, outputs=num_classes, dropout=dropout, decode=decode)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                            high_open=True)

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, reduction="none", label_smoothing=self.label_smoothing)
