"""Cumulative link model (McCullagh 1980): one latent projection cut by K-1 ordered thresholds.

``P(y <= k) = F(theta_k - f(x))`` with ``f(x) = w . x`` and ``F`` the logistic (``link: logit``,
the proportional-odds model) or standard normal (``link: probit``) CDF. The cut points are
parametrised as ``theta_0`` plus cumulative softplus increments, so they are strictly increasing
and every class probability is positive for any parameter values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchkit.models.head import Estimate, Head
from benchkit.models.options import check_choice
from benchkit.registry import register_head
from ._common import CategoricalDecoding, inverse_softplus

LINKS = ("logit", "probit")
_MIN_GAP = 1e-12
_LN2 = 0.6931471805599453


@register_head("clm")
class CumulativeLinkHead(CategoricalDecoding, Head):
    """Raw outputs are the K-1 cumulative link arguments ``z_k = theta_k - w . x`` (increasing in k).

    Loss: negative log-likelihood of ``P(y) = F(z_y) - F(z_{y-1})``, computed in log space
    (logit: ``log sigmoid(b) + log sigmoid(-a) + log(1 - exp(a - b))``; probit: ``log_ndtr`` of
    the nearer tail plus ``log(1 - exp(.))`` of the log-CDF gap), so deep tails stay finite.
    Score: expected level. Options: ``link`` (``logit`` | ``probit``), ``decode`` (``argmax`` |
    ``expected``), ``dropout``.
    """

    def __init__(self, in_features: int, num_classes: int, link: str = "logit",
                 decode: str = "argmax", dropout: float = 0.0):
        super().__init__(in_features, num_classes, outputs=1, bias=False, dropout=dropout, decode=decode)
        self.link = check_choice("link", link, LINKS)
        self.first_cut = nn.Parameter(torch.tensor(-(num_classes - 2) / 2.0))
        self.cut_gaps = nn.Parameter(torch.full((num_classes - 2,), inverse_softplus(1.0)))

    def cut_points(self) -> torch.Tensor:
        """The K-1 strictly increasing cut points ``theta_k``."""
        steps = torch.cumsum(F.softplus(self.cut_gaps), 0)
        return self.first_cut + torch.cat([steps.new_zeros(1), steps])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.cut_points() - self.linear(self.dropout(features))

    def cumulative(self, outputs: torch.Tensor) -> torch.Tensor:
        """``P(y <= k)`` for k = 0..K-2."""
        z = outputs.float()
        return torch.sigmoid(z) if self.link == "logit" else torch.special.ndtr(z)

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = outputs.float()
        last = self.num_classes - 1
        upper = z.gather(1, targets.clamp(max=last - 1)[:, None])[:, 0]
        lower = z.gather(1, (targets - 1).clamp(min=0)[:, None])[:, 0]
        if self.link == "logit":
            log_first, log_last = F.logsigmoid(upper), F.logsigmoid(-lower)
            log_middle = log_first + log_last + _log1mexp(upper - lower)
        else:
            log_first, log_last = torch.special.log_ndtr(upper), torch.special.log_ndtr(-lower)
            flip = lower > 0
            log_high = torch.special.log_ndtr(torch.where(flip, -lower, upper))
            log_low = torch.special.log_ndtr(torch.where(flip, -upper, lower))
            log_middle = log_high + _log1mexp(log_high - log_low)
        log_prob = torch.where(targets == 0, log_first, torch.where(targets == last, log_last, log_middle))
        return -log_prob

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """K class probabilities ``F(z_k) - F(z_{k-1})``."""
        cumulative = self.cumulative(outputs)
        ones = torch.ones_like(cumulative[:, :1])
        padded = torch.cat([torch.zeros_like(ones), cumulative, ones], dim=1)
        probs = (padded[:, 1:] - padded[:, :-1]).clamp_min(0)
        return probs / probs.sum(1, keepdim=True)

    def estimate(self, outputs: torch.Tensor) -> Estimate:
        return {"probs": self.probabilities(outputs)}


def _log1mexp(gap: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-gap))`` for ``gap > 0``, accurate at both ends (Maechler 2012); gaps floored at 1e-12."""
    gap = gap.clamp_min(_MIN_GAP)
    small, large = gap.clamp(max=_LN2), gap.clamp(min=_LN2)
    return torch.where(gap < _LN2, torch.log(-torch.expm1(-small)), torch.log1p(-torch.exp(-large)))
