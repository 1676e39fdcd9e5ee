"""The optimizer and schedule from timm's factories: the old AdamW recipe exactly, layer decay, warmup + cosine."""

import math

import numpy as np
import pytest
import torch

from benchkit.config import ModelConfig, OptimizerConfig, SchedulerConfig
from benchkit.errors import ConfigError
from benchkit.models.grader import build_model
from benchkit.training.optim import create_optimizer, create_schedule

HYPER = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable", "differentiable",
         "fused")


def _model(freeze=0, head="regression"):
    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate({"backbone": {"name": "tiny_cnn", "freeze": freeze},
                                                   "head": {"name": head}}), 4)


def _step(model, optimizer):
    torch.manual_seed(1)
    optimizer.zero_grad()
    model.train()
    model.head.loss(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()


@pytest.mark.parametrize("freeze", [0, 1])
def test_default_is_the_old_adamw_recipe_exactly(freeze):
    config = OptimizerConfig(lr=1e-3, weight_decay=1e-4, betas=(0.8, 0.99))
    model, old_model = _model(freeze), _model(freeze)
    optimizer = create_optimizer(model, config)
    old = torch.optim.AdamW([p for p in old_model.parameters() if p.requires_grad], lr=1e-3,
                            weight_decay=1e-4, betas=(0.8, 0.99))
    assert type(optimizer) is torch.optim.AdamW and len(optimizer.param_groups) == 1
    group, old_group = optimizer.param_groups[0], old.param_groups[0]
    assert [p.shape for p in group["params"]] == [p.shape for p in old_group["params"]]
    assert len(group["params"]) == sum(p.requires_grad for p in model.parameters()) < (
        len(list(model.parameters())) if freeze else 10**9)
    assert {k: group[k] for k in HYPER} == {k: old_group[k] for k in HYPER}
    for _ in range(3):
        _step(model, optimizer)
        _step(old_model, old)
    for new, before in zip(model.state_dict().values(), old_model.state_dict().values()):
        assert torch.equal(new, before)


def test_layer_decay_gives_each_layer_its_learning_rate():
    """tiny_cnn: stem, 3 stages, then the head. lr 1e-3, decay 0.5: head 1e-3, stage 3 5e-4, ... stem 6.25e-5."""
    model = _model()
    optimizer = create_optimizer(model, OptimizerConfig(lr=1e-3, weight_decay=0.05, layer_decay=0.5,
                                                        filter_bias_and_bn=True))
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    expected = {"backbone.body.0.": 1e-3 / 16, "backbone.body.1.": 1e-3 / 8, "backbone.body.2.": 1e-3 / 4,
                "backbone.body.3.": 1e-3 / 2, "head.": 1e-3}
    names = dict(model.named_parameters())
    assert len(lr_of) == len(names)
    for name, param in names.items():
        prefix = next(p for p in expected if name.startswith(p))
        assert lr_of[id(param)] == pytest.approx(expected[prefix], rel=1e-12), name
        assert wd_of[id(param)] == (0.0 if param.ndim == 1 else 0.05), name
    assert not any("lr_scale" in g for g in optimizer.param_groups)


def test_layer_decay_skips_frozen_layers_and_keeps_their_numbering():
    model = _model(freeze=1)
    optimizer = create_optimizer(model, OptimizerConfig(lr=1.0, layer_decay=0.5))
    lrs = sorted({g["lr"] for g in optimizer.param_groups})
    assert lrs == [0.25, 0.5, 1.0]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())


def test_no_weight_decay_on_norms_and_biases():
    model = _model()
    optimizer = create_optimizer(model, OptimizerConfig(weight_decay=0.1, filter_bias_and_bn=True))
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    for name, param in model.named_parameters():
        is_norm_or_bias = param.ndim == 1
        assert (id(param) in decay) != is_norm_or_bias, name
    assert {g["lr"] for g in optimizer.param_groups} == {OptimizerConfig().lr}


def test_unknown_optimizer_is_a_config_error():
    with pytest.raises(ConfigError, match="adamww.*timm optimizer"):
        create_optimizer(_model(), OptimizerConfig(name="adamww"))


def _lrs(optimizer, schedule, epochs):
    seen = []
    for epoch in range(1, epochs + 1):
        seen.append([g["lr"] for g in optimizer.param_groups])
        schedule.after_epoch(epoch)
    return np.array(seen)


@pytest.mark.parametrize("name, torch_scheduler", [
    ("cosine", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 8, 1e-5)),
    ("step", lambda opt: torch.optim.lr_scheduler.StepLR(opt, 3, 0.5))])
def test_cosine_and_step_follow_the_old_torch_schedules(name, torch_scheduler):
    config = SchedulerConfig(name=name, min_lr=1e-5, step_size=3, gamma=0.5)
    optimizer = create_optimizer(_model(), OptimizerConfig(lr=1e-3))
    old_optimizer = torch.optim.AdamW(_model().parameters(), lr=1e-3)
    old = torch_scheduler(old_optimizer)
    old_lrs = []
    for _ in range(8):
        old_lrs.append(old_optimizer.param_groups[0]["lr"])
        old_optimizer.step()
        old.step()
    new_lrs = _lrs(optimizer, create_schedule(optimizer, config, 8, 5), 8)[:, 0]
    assert np.array_equal(new_lrs.astype(np.float32), np.array(old_lrs, dtype=np.float32)), (new_lrs, old_lrs)


def test_warmup_then_cosine_per_layer():
    """2 warmup epochs from 1e-6, cosine to 0 over 6 epochs (warmup inside them), layer scales kept."""
    optimizer = create_optimizer(_model(), OptimizerConfig(lr=1e-3, layer_decay=0.5))
    schedule = create_schedule(optimizer, SchedulerConfig(name="cosine", warmup_epochs=2, warmup_lr=1e-6), 6, 5)
    lrs = _lrs(optimizer, schedule, 6)
    scales = np.array([g["layer_scale"] for g in optimizer.param_groups])
    top = [1e-6 + 0 * (1e-3 - 1e-6) / 2, 1e-6 + 1 * (1e-3 - 1e-6) / 2]  # warmup: lr_init + t * step (per group)
    top += [0.5 * 1e-3 * (1 + math.cos(math.pi * t / 6)) for t in range(2, 6)]
    head = int(np.argmax(scales))
    assert lrs[:, head] == pytest.approx(top, rel=1e-9)
    for j, scale in enumerate(scales):
        assert lrs[2:, j] == pytest.approx(np.array(top[2:]) * scale, rel=1e-9)
        assert lrs[1, j] == pytest.approx(1e-6 + (1e-3 * scale - 1e-6) / 2, rel=1e-9)


def test_warmup_without_decay_holds_the_learning_rate():
    optimizer = create_optimizer(_model(), OptimizerConfig(lr=1e-3))
    lrs = _lrs(optimizer, create_schedule(optimizer, SchedulerConfig(warmup_epochs=2, warmup_lr=0.0), 5, 3), 5)
    assert lrs[:, 0] == pytest.approx([0.0, 5e-4, 1e-3, 1e-3, 1e-3])


def test_onecycle_refuses_a_second_warmup():
    optimizer = create_optimizer(_model(), OptimizerConfig())
    with pytest.raises(ConfigError, match="onecycle"):
        create_schedule(optimizer, SchedulerConfig(name="onecycle", warmup_epochs=1), 4, 2)
