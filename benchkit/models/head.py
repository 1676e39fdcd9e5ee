"""The head contract: a head owns its output layer, its loss and its decoding.

A plugin head writes three methods (as MMPretrain's heads do): ``forward(features) -> outputs`` (pooled backbone
features ``(B, in_features)`` to raw outputs), ``loss(outputs, targets) -> scalar`` for integer levels
``0..K-1`` (the class weights of the training loss, when set, are ``self.class_weights``) and
``predict(outputs) -> Prediction``: the level, a continuous score on the level scale ``[0, K-1]`` and the K class
probabilities where the formulation defines them. The base gives defaults for each: the dropout-plus-linear layer
(``outputs=W``), the weighted mean of ``sample_losses``, and decoding through an *estimate*.

The estimate machinery is optional: ``estimate(outputs)`` gives the named, averageable quantities a head decodes
from (any keys: ``score``, ``probs``, ``exceedance``, ...; each a ``(B,)`` or ``(B, n)`` tensor), and
``decode_estimate(estimate)`` decodes them, one :class:`Prediction` per decoding in ``decodings``. Means of
estimates are estimates, so test-time augmentation and ensembles average them and decode the mean with the head's
own decodings: ``predict(outputs) == decode_estimate(estimate(outputs))[decode]``. ``calibrate_estimate`` fits a
decoding (cut points, thresholds) on the validation estimate and keeps it in buffers.

Heads written to the 0.1 contract (``loss(outputs, targets, class_weights=None)``) still work, with a
``DeprecationWarning``; a 0.1 ``calibrate(outputs, targets)`` is refused with what to implement instead.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from benchkit.models.options import check_choice, check_dropout


@dataclass
class Prediction:
    """Decoded outputs of a batch: ``level`` (B,) long, ``score`` (B,) float, ``probs`` (B, K) or None."""

    level: torch.Tensor
    score: torch.Tensor
    probs: torch.Tensor | None = None


Estimate = dict[str, torch.Tensor]


def mean_estimate(estimates: list[Estimate]) -> Estimate:
    """The element-wise mean of several estimates of the same images, over the keys they all have."""
    if not estimates:
        raise ValueError("no estimates to average")
    keys = [k for k in estimates[0] if all(k in e for e in estimates[1:])]
    return {k: torch.stack([e[k].double() for e in estimates]).mean(0).to(estimates[0][k].dtype) for k in keys}


def check_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Targets as a long (B,) tensor; on CPU, levels outside ``0..K-1`` are a ValueError.

    Tensors on an accelerator are not inspected, to keep the training step free of host syncs.
    """
    targets = targets.reshape(-1).long()
    if targets.device.type == "cpu" and targets.numel():
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"targets must be levels 0..{num_classes - 1}, got values in [{low}, {high}]")
    return targets


def generic_decodings(estimate: Estimate, num_classes: int) -> dict[str, Prediction]:
    """Decoding of any estimate: the most probable level when it has ``probs``, else the rounded score
    clamped to the levels ``0..num_classes-1`` (a score may fall outside ``[0, K-1]``)."""
    probs = estimate.get("probs")
    if probs is not None:
        score = estimate.get("score")
        if score is None:
            score = (probs * torch.arange(probs.shape[1], dtype=probs.dtype)).sum(1)
        return {"default": Prediction(probs.argmax(1), score, probs)}
    score = estimate["score"]
    return {"default": Prediction(torch.round(score).clamp(0, num_classes - 1).long(), score)}


class Head(nn.Module):
    """Base class of all heads: the decoding choice, the optional dropout-plus-linear output layer, the class
    weights of the loss and the estimate machinery live here (see the module docstring for the contract).

    A subclass sets ``has_probabilities`` and ``decodings`` (the first is the default ``decode``) and either
    passes ``outputs`` (the width of its linear layer, after ``dropout``) to ``__init__`` or builds its own layers.
    """

    has_probabilities: ClassVar[bool] = False
    decodings: ClassVar[tuple[str, ...]] = ("default",)

    def __init__(self, in_features: int, num_classes: int, *, outputs: int | None = None, bias: bool = True,
                 dropout: float = 0.0, decode: str | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"an ordinal head needs at least 2 classes, got {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.decode = check_choice("decode", self.decodings[0] if decode is None else decode, self.decodings)
        if outputs is not None:
            self.dropout = nn.Dropout(check_dropout(dropout))
            self.linear = nn.Linear(in_features, outputs, bias=bias)
        self.register_buffer("class_weights", None, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features))

    def set_class_weights(self, weights) -> None:
        """The training loss's weight of each true class (K values; None: unweighted), set once when the
        model is built (:func:`benchkit.models.grader.model_for`)."""
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
            if weights.numel() != self.num_classes:
                raise ValueError(f"class_weights has {weights.numel()} values for {self.num_classes} classes")
        self.class_weights = weights

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean of :meth:`sample_losses`, each sample weighted by its true class' weight (normalised by
        the weights) when class weights are set."""
        targets = check_targets(targets, self.num_classes)
        per_sample = self.sample_losses(outputs, targets)
        weights = self.sample_weights(targets)
        if weights is None:
            return per_sample.mean()
        return (weights * per_sample).sum() / weights.sum().clamp_min(torch.finfo(torch.float32).tiny)

    @contextlib.contextmanager
    def unweighted(self) -> Iterator[Head]:
        """The head with its class weights set aside, for losses that compare runs (validation)."""
        weights, self.class_weights = self.class_weights, None
        try:
            yield self
        finally:
            self.class_weights = weights

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """The loss of each sample ``(B,)``, for levels ``targets`` checked by :func:`check_targets`."""
        raise NotImplementedError

    def sample_weights(self, targets: torch.Tensor) -> torch.Tensor | None:
        """Each sample's class weight ``(B,)`` float32, or None without class weights."""
        if self.class_weights is None:
            return None
        return self.class_weights.to(targets.device)[targets]

    def estimate(self, outputs: torch.Tensor) -> Estimate:
        """The averageable quantities this head decodes from (default: the score and probabilities of
        ``predict``)."""
        pred = self.predict(outputs)
        return {"score": pred.score} if pred.probs is None else {"score": pred.score, "probs": pred.probs}

    def decode_estimate(self, estimate: Estimate, include_unfitted: bool = False) -> dict[str, Prediction]:
        """Every decoding of an estimate (or of a mean of estimates); default: :func:`generic_decodings`.

        ``include_unfitted`` adds fitted decodings (``calibrated``) before they are fitted.
        """
        return generic_decodings(estimate, self.num_classes)

    def predict(self, outputs: torch.Tensor) -> Prediction:
        """The level, score and probabilities of the head's chosen decoding (``self.decode``)."""
        return self.decode_estimate(self.estimate(outputs), include_unfitted=True)[self.decode]

    def calibrate_estimate(self, estimate: Estimate, targets: torch.Tensor) -> dict | None:
        """Fit decoding parameters on a validation estimate (the heads with ``calibrated`` decodings)."""
        return None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "calibrate" in cls.__dict__:
            raise TypeError(f"head {cls.__qualname__}: calibrate(outputs, targets) is the benchkit 0.1 contract, "
                            f"no longer called; implement calibrate_estimate(estimate, targets) instead")
        legacy = _legacy_loss_keyword(cls.__dict__.get("loss"))
        if legacy:
            warnings.warn(f"head {cls.__qualname__}: loss(outputs, targets, {legacy}=...) is the benchkit 0.1 "
                          f"contract; write loss(outputs, targets) and read self.class_weights",
                          DeprecationWarning, stacklevel=2)
            cls.loss = _adapted_loss(cls.__dict__["loss"], legacy)


def _legacy_loss_keyword(loss) -> str | None:
    """``class_weights`` (0.1.0) or ``weighted`` (0.1.x) when ``loss`` takes it, else None."""
    if loss is None:
        return None
    parameters = inspect.signature(loss).parameters
    return next((name for name in ("class_weights", "weighted") if name in parameters), None)


def _adapted_loss(loss, keyword: str):
    """A 0.2 ``loss(outputs, targets)`` calling a 0.1 one with the head's class weights."""
    @functools.wraps(loss)
    def adapted(self, outputs, targets):
        value = self.class_weights if keyword == "class_weights" else self.class_weights is not None
        return loss(self, outputs, targets, **{keyword: value})
    return adapted
