"""The reference head: one sigmoid output regressed onto the level scaled to ``[0, 1]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchkit.models.head import Estimate, Head, Prediction
from benchkit.models.options import check_choice, check_number
from benchkit.registry import register_head
from ._calibration import CALIBRATE_METRICS, CutPointDecoder

LOSSES = ("l1", "mse", "huber")


@register_head("regression")
class RegressionHead(Head):
    """Sigmoid regression: ``score = sigmoid(w . x + b) * (K-1)``, trained on ``level / (K-1)``.

    Options: ``loss`` (``l1`` | ``mse`` | ``huber``), ``huber_delta`` (on the ``[0, 1]`` target
    scale), ``decode`` (``round``: nearest level; ``calibrated``: K-1 cut points fitted on the
    validation scores by ``calibrate``; until then the rounding cuts ``k + 0.5``),
    ``calibrate_metric`` (``qwk`` | ``mae``), ``dropout``. No class probabilities.
    """

    has_probabilities = False
    decodings = ("round", "calibrated")

    def __init__(self, in_features: int, num_classes: int, loss: str = "l1", huber_delta: float = 0.1,
                 decode: str = "round", calibrate_metric: str = "qwk", dropout: float = 0.0):
        super().__init__(in_features, num_classes, outputs=1, dropout=dropout, decode=decode)
        self.loss_name = check_choice("loss", loss, LOSSES)
        self.huber_delta = check_number("huber_delta", huber_delta, low=0.0, low_open=True)
        self.decoder = CutPointDecoder(num_classes, check_choice("calibrate_metric", calibrate_metric,
                                                                 CALIBRATE_METRICS))

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        predicted = torch.sigmoid(outputs.float().reshape(-1))
        wanted = targets.float() / (self.num_classes - 1)
        if self.loss_name == "l1":
            per_sample = (predicted - wanted).abs()
        elif self.loss_name == "mse":
            per_sample = (predicted - wanted) ** 2
        else:
            per_sample = F.huber_loss(predicted, wanted, reduction="none", delta=self.huber_delta)
        return per_sample

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """The continuous level estimate ``sigmoid(output) * (K-1)``."""
        return torch.sigmoid(outputs.float().reshape(-1)) * (self.num_classes - 1)

    def estimate(self, outputs: torch.Tensor) -> Estimate:
        return {"score": self.scores(outputs)}

    def decode_estimate(self, estimate: Estimate, include_unfitted: bool = False) -> dict[str, Prediction]:
        """``round`` and, once calibrated (or when asked), ``calibrated`` levels of the score."""
        score = estimate["score"]
        decoded = {"round": Prediction(torch.round(score).clamp(0, self.num_classes - 1).long(), score)}
        if include_unfitted or bool(self.decoder.fitted):
            decoded["calibrated"] = Prediction(self.decoder.levels(score), score)
        return decoded

    def calibrate_estimate(self, estimate: Estimate, targets: torch.Tensor) -> dict:
        """Fit the cut points of the ``calibrated`` decoding on validation scores."""
        return {"decoding": "calibrated", **self.decoder.fit(estimate["score"], targets)}
