"""CORAL (Cao, Mirjalili & Raschka 2020): K-1 binary tasks ``y > k`` sharing one weight vector.

Rank consistency, ``P(y > 0) >= P(y > 1) >= ...``, needs the K-1 biases to be decreasing. The
paper gets it at the optimum; here it holds by construction: the biases are parametrised as
``b_0`` and ``b_k = b_{k-1} - softplus(delta_k)``, so they are strictly decreasing for any
parameter values and the derived class probabilities are never negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchkit.models.head import Head
from benchkit.registry import register_head
from ._calibration import ExceedanceDecoding, ThresholdDecoder
from ._common import inverse_softplus


@register_head("coral")
class CoralHead(ExceedanceDecoding, Head):
    """Logits ``l_k = w . x + b_k`` (k = 0..K-2) with ``P(y > k) = sigmoid(l_k)``.

    Loss: mean over samples of the summed binary cross-entropies against the extended binary
    targets ``[y > k]`` (coral-pytorch's ``coral_loss``). Level: ``#{k : P(y > k) > threshold}``;
    score: ``sum_k P(y > k)`` (the expected level). Options: ``threshold`` in ``(0, 1)``,
    ``decode`` (``threshold`` | ``calibrated``: threshold fitted on validation outputs by
    ``calibrate``, the default one until then),
    ``calibrate_metric`` (``qwk`` | ``mae``), ``dropout``.
    """

    def __init__(self, in_features: int, num_classes: int, threshold: float = 0.5,
                 decode: str = "threshold", calibrate_metric: str = "qwk", dropout: float = 0.0):
        super().__init__(in_features, num_classes, outputs=1, bias=False, dropout=dropout, decode=decode)
        gap = 1.0 / (num_classes - 1)
        self.first_bias = nn.Parameter(torch.tensor(1.0))
        self.bias_gaps = nn.Parameter(torch.full((num_classes - 2,), inverse_softplus(gap)))
        self.decoder = ThresholdDecoder(num_classes, threshold, calibrate_metric)

    def biases(self) -> torch.Tensor:
        """The K-1 strictly decreasing biases ``b_k``."""
        steps = torch.cumsum(F.softplus(self.bias_gaps), 0)
        return self.first_bias - torch.cat([steps.new_zeros(1), steps])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features)) + self.biases()

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = outputs.float()
        ranks = torch.arange(self.num_classes - 1, device=logits.device)
        exceeds = (targets[:, None] > ranks).float()
        return -(F.logsigmoid(logits) * exceeds + F.logsigmoid(-logits) * (1 - exceeds)).sum(1)

    def exceedance(self, outputs: torch.Tensor) -> torch.Tensor:
        """``P(y > k) = sigmoid(l_k)``."""
        return torch.sigmoid(outputs.float())

