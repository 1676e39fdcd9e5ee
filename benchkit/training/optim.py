"""The optimizer and its learning-rate schedule, built by timm's factories.

``create_optimizer`` calls ``timm.optim.create_optimizer_v2``: AdamW (or any timm optimizer) over
the trainable parameters, optionally without weight decay on norms and biases
(``filter_bias_and_bn``) and with layer-wise learning-rate decay (``layer_decay``: the head gets
``lr``, the last backbone stage ``lr * d``, the one before ``lr * d**2``, ..., the stem the smallest).
Layers are the backbone's own stem and stages (see :meth:`GraderModel.group_matcher`). The default
(no layer decay, decay on every parameter) is one group with ``lr`` and ``weight_decay``: the
AdamW recipe benchkit always had.

``create_schedule`` calls ``timm.scheduler.create_scheduler_v2`` for ``step`` and ``cosine`` (and
for a warmup without decay), stepped after every epoch, with an optional linear warmup from
``warmup_lr`` over ``warmup_epochs``; ``onecycle`` (which timm lacks) is torch's, stepped after every
update.
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2, list_optimizers
from timm.scheduler import create_scheduler_v2
from torch import nn

from benchkit.config.schema import OptimizerConfig, SchedulerConfig
from benchkit.errors import BenchkitError, ConfigError

FUSED = ("adamw", "adam", "sgd")
"""timm names of torch optimizers with fused kernels (one launch per few tensors, no host sync with GradScaler);
``Runtime.fused`` says whether a run uses them."""


def create_optimizer(model: nn.Module, config: OptimizerConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of ``model``'s trainable parameters, each group at its own (layer-decayed) lr.

    timm leaves a layer's factor in ``lr_scale`` for its own schedulers to apply; here it is applied
    at once (``lr = config.lr * lr_scale``, kept as ``layer_scale``), so every schedule, and no
    schedule, starts from the per-group learning rates.
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise BenchkitError("the model has no trainable parameters (is everything frozen?)")
    if config.name not in list_optimizers():
        raise ConfigError(f"train.optimizer.name {config.name!r} is not a timm optimizer "
                          f"(e.g. adamw, sgd, lamb, lion; see timm.optim.list_optimizers())")
    if fused and config.name not in FUSED:
        raise ConfigError(f"train.optimizer.fused: {config.name!r} has no fused kernels (use one of {FUSED})")
    extra = {"fused": True} if fused else {}
    optimizer = create_optimizer_v2(model, opt=config.name, lr=config.lr, weight_decay=config.weight_decay,
                                    betas=tuple(config.betas), filter_bias_and_bn=config.filter_bias_and_bn,
                                    layer_decay=config.layer_decay, **extra)
    for group in optimizer.param_groups:
        scale = group.pop("lr_scale", None)
        if scale is not None:
            group["lr"] = config.lr * scale
            group["layer_scale"] = scale
    return optimizer


class Schedule:
    """The learning-rate schedule of one run: told after every update and after every epoch."""

    def __init__(self, scheduler=None, per_update: bool = False):
        self.scheduler = scheduler
        self.per_update = per_update

    def after_update(self) -> None:
        if self.scheduler is not None and self.per_update:
            self.scheduler.step()

    def after_epoch(self, epoch: int) -> None:
        """``epoch`` epochs are done; set the learning rate of the next one."""
        if self.scheduler is not None and not self.per_update:
            self.scheduler.step(epoch)

    def state_dict(self) -> dict | None:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scheduler is not None and state is not None:
            self.scheduler.load_state_dict(state)


def create_schedule(optimizer: torch.optim.Optimizer, config: SchedulerConfig, epochs: int,
                    steps_per_epoch: int) -> Schedule:
    """The schedule ``config`` names over ``epochs`` epochs of ``steps_per_epoch`` updates."""
    if config.name == "onecycle":
        if config.warmup_epochs:
            raise ConfigError("train.scheduler: onecycle has its own warmup (pct_start); "
                              "leave warmup_epochs at 0")
        max_lr = [group["lr"] if config.max_lr is None else config.max_lr * group.get("layer_scale", 1.0)
                  for group in optimizer.param_groups]
        return Schedule(torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch, pct_start=config.pct_start),
            per_update=True)
    if config.name == "none" and not config.warmup_epochs:
        return Schedule()
    name = "constant" if config.name == "none" else config.name
    scheduler, _ = create_scheduler_v2(optimizer, sched=name, num_epochs=epochs, decay_epochs=config.step_size,
                                       decay_rate=config.gamma, min_lr=config.min_lr, warmup_lr=config.warmup_lr,
                                       warmup_epochs=config.warmup_epochs)
    return Schedule(scheduler)
