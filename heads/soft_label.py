"""Classification against unimodal soft targets: K logits trained towards a distribution peaked at the label.

Target families (one row per true level y, columns k = 0..K-1, every row sums to 1, mode at y):

- ``binomial`` (Liu et al. 2020, "Unimodal regularized neuron stick-breaking for ordinal
  classification"; as in dlordinal's ``BinomialCrossEntropyLoss``): ``Binomial(K-1, p_y)`` pmf
  with ``p_y = 0.1 + 0.8 y / (K-1)``. No parameter.
- ``poisson`` (Beckham & Pal 2017, "Unimodal probability distributions for deep ordinal
  classification"): ``softmax_k((k log l - l - log k!) / tau)`` with ``l = y + 0.5``, the Poisson
  log-pmf re-centred so its single mode is y, sharpened or flattened by ``tau``.
- ``exponential`` (Liu et al. 2020; Vargas et al. 2023, dlordinal's ``ExponentialCrossEntropyLoss``
  with p = 1): ``softmax_k(-|k - y| / tau)``.
- ``triangular`` (Vargas, Gutierrez & Hervas-Martinez 2023, "Soft labelling based on triangular
  distributions for ordinal classification", Information Fusion; dlordinal's
  ``TriangularCrossEntropyLoss``): the mass that a triangular density on ``[0, 1]``, placed on
  class y's interval ``[y/K, (y+1)/K]``, gives each interval; ``alpha`` is the mass given to each
  adjacent class (the paper's alpha_2).

The training target is ``(1 - eta) * one_hot + eta * soft`` (dlordinal's ``eta``), optionally
label-smoothed towards the uniform distribution: ``(1 - s) * target + s / K``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchkit.models.head import Head
from benchkit.models.options import check_choice, check_number
from benchkit.registry import register_head
from ._common import CategoricalDecoding

SOFT_TARGETS = ("binomial", "poisson", "exponential", "triangular")
_PARAMETER_OF = {"poisson": "tau", "exponential": "tau", "triangular": "alpha"}


@register_head("soft_label")
class SoftLabelHead(CategoricalDecoding, Head):
    """K logits; cross-entropy against unimodal soft targets; predicts like ``softmax``.

    Options: ``soft`` (``binomial`` | ``poisson`` | ``exponential`` | ``triangular``), ``tau``
    (> 0, poisson and exponential, default 1.0), ``alpha`` (in (0, 0.2], triangular, default
    0.01), ``eta`` (in (0, 1], weight of the soft target against the one-hot one, default 1.0),
    ``label_smoothing`` (in [0, 1), mass spread uniformly, as in ``softmax``; default 0), ``decode`` (``argmax`` | ``expected``), ``dropout``. Score: expected level.
    """

    def __init__(self, in_features: int, num_classes: int, soft: str = "binomial",
                 tau: float | None = None, alpha: float | None = None, eta: float = 1.0,
                 label_smoothing: float = 0.0, decode: str = "argmax", dropout: float = 0.0):
        super().__init__(in_features, num_classes, outputs=num_classes, dropout=dropout, decode=decode)
        self.soft = check_choice("soft", soft, SOFT_TARGETS)
        for name, value in (("tau", tau), ("alpha", alpha)):
            if value is not None and _PARAMETER_OF.get(soft) != name:
                users = [k for k, v in _PARAMETER_OF.items() if v == name]
                raise ValueError(f"option {name!r} applies only to soft: {' | '.join(users)}, "
                                 f"not to soft: {soft}")
        tau = check_number("tau", 1.0 if tau is None else tau, low=0.0, low_open=True)
        alpha = check_number("alpha", 0.01 if alpha is None else alpha, low=0.0, high=0.2, low_open=True)
        eta = check_number("eta", eta, low=0.0, high=1.0, low_open=True)
        smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
        targets = (1 - eta) * torch.eye(num_classes, dtype=torch.float64) + eta * soft_targets(
            soft, num_classes, tau=tau, alpha=alpha)
        targets = (1 - smoothing) * targets + smoothing / num_classes
        self.register_buffer("targets", targets.float(), persistent=False)

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(outputs.float(), dim=1)
        wanted = self.targets.to(log_probs.device)[targets]
        return -(wanted * log_probs).sum(1)


def soft_targets(soft: str, num_classes: int, *, tau: float = 1.0, alpha: float = 0.01) -> torch.Tensor:
    """The (K, K) float64 matrix of soft targets; row y is the target distribution of level y."""
    k = torch.arange(num_classes, dtype=torch.float64)
    y = k[:, None]
    if soft == "binomial":
        p = torch.linspace(0.1, 0.9, num_classes, dtype=torch.float64)[:, None]
        n = num_classes - 1
        log_comb = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        return torch.exp(log_comb + k * torch.log(p) + (n - k) * torch.log1p(-p))
    if soft == "poisson":
        rate = y + 0.5
        return torch.softmax((k * torch.log(rate) - rate - torch.lgamma(k + 1)) / tau, dim=1)
    if soft == "exponential":
        return torch.softmax(-(k - y).abs() / tau, dim=1)
    if soft == "triangular":
        return _triangular_targets(num_classes, alpha)
    raise ValueError(f"unknown soft target family {soft!r}")


def _triangular_targets(num_classes: int, alpha: float) -> torch.Tensor:
    """Vargas et al. (2023), eqs. for a_j, b_j, c_j: interval masses of one triangular density per class."""
    n = num_classes
    root = math.sqrt(2 * alpha)
    c_first = (1 - 2 * alpha) * (2 * alpha - root)
    alpha_first = ((1 - math.sqrt(1 - 4 * c_first)) / 2) ** 2
    c_last = ((n - 1) / n) ** 2 * (1 - 2 * alpha) * (root * (root - 1))
    alpha_last = ((1 - math.sqrt(1 - 4 * c_last)) / 2) ** 2
    den = 2 * n * (1 - 2 * alpha)
    rows = []
    for j in range(1, n + 1):
        if j == 1:
            a, b, c = 0.0, 1.0 / ((1 - math.sqrt(alpha_first)) * n), 0.0
        elif j == n:
            a_plus = 1 + 1 / (n * (math.sqrt(alpha_last) - 1))
            a = a_plus if a_plus > 0 else 1 - 1 / (n * (math.sqrt(alpha_last) - 1))
            b = c = 1.0
        else:
            base_a = 2 * j - 2 - 4 * j * alpha + 2 * alpha
            a = (base_a + root) / den if (base_a + root) / den < (j - 1) / n else (base_a - root) / den
            base_b = 2 * j - 4 * j * alpha + 2 * alpha
            b = (base_b + root) / den if (base_b + root) / den > j / n else (base_b - root) / den
            c = (a + b) / 2
        edges = [_triangular_cdf(i / n, a, b, c) for i in range(n + 1)]
        rows.append([hi - lo for lo, hi in zip(edges[:-1], edges[1:])])
    targets = torch.tensor(rows, dtype=torch.float64).clamp_min(0)
    return targets / targets.sum(1, keepdim=True)


def _triangular_cdf(x: float, a: float, b: float, c: float) -> float:
    if x <= a:
        return 0.0
    if x >= b:
        return 1.0
    if x <= c:
        return (x - a) ** 2 / ((b - a) * (c - a))
    return 1.0 - (b - x) ** 2 / ((b - a) * (b - c))
