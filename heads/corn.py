"""CORN (Shi, Cao & Raschka 2023): K-1 conditional binary tasks ``P(y > k | y > k-1)``.

Task k is trained only on the samples with ``y >= k`` (all samples for k = 0), so the
unconditional exceedances ``P(y > k) = prod_{j <= k} P(y > j | y > j-1)`` are rank consistent
for any weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchkit.models.head import Head, check_targets
from benchkit.registry import register_head
from ._calibration import ExceedanceDecoding, ThresholdDecoder


@register_head("corn")
class CornHead(ExceedanceDecoding, Head):
    """K-1 independent logits ``l_k`` with ``sigmoid(l_k) = P(y > k | y > k-1)``.

    Loss: binary cross-entropy of task k against ``[y > k]`` over its conditional subset
    ``y >= k``, summed over tasks and divided by the total subset size (coral-pytorch's
    ``corn_loss``); class weights weight each sample of every subset by its true class' weight.
    Level: ``#{k : P(y > k) > threshold}``; score: ``sum_k P(y > k)``. Options: ``threshold``
    in ``(0, 1)``, ``decode`` (``threshold`` | ``calibrated``: fitted by ``calibrate``), ``calibrate_metric``
    (``qwk`` | ``mae``), ``dropout``.
    """

    def __init__(self, in_features: int, num_classes: int, threshold: float = 0.5,
                 decode: str = "threshold", calibrate_metric: str = "qwk", dropout: float = 0.0):
        super().__init__(in_features, num_classes, outputs=num_classes - 1, dropout=dropout, decode=decode)
        self.decoder = ThresholdDecoder(num_classes, threshold, calibrate_metric)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed over the tasks' conditional subsets, divided by their total (weighted) size."""
        targets = check_targets(targets, self.num_classes)
        logits = outputs.float()
        ranks = torch.arange(self.num_classes - 1, device=logits.device)
        in_task = (targets[:, None] >= ranks).float()
        exceeds = (targets[:, None] > ranks).float()
        per_entry = -(F.logsigmoid(logits) * exceeds + F.logsigmoid(-logits) * (1 - exceeds))
        weights = self.sample_weights(targets)
        if weights is not None:
            in_task = in_task * weights[:, None]
        return (per_entry * in_task).sum() / in_task.sum().clamp_min(torch.finfo(torch.float32).tiny)

    def exceedance(self, outputs: torch.Tensor) -> torch.Tensor:
        """Unconditional ``P(y > k)``: the running product of the conditional probabilities."""
        return torch.exp(torch.cumsum(F.logsigmoid(outputs.float()), dim=1))
