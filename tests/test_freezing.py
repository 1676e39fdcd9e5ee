"""Freezing, dropout and norm statistics: exact rules on a hand-built backbone, then every registered one."""

import copy
import functools

import pytest
import torch
from torch import nn

from benchkit.models.backbone import Backbone
from benchkit.models.freezing import (apply_freeze, dropout_rates, frozen_modules, keep_frozen_in_eval,
                               parameter_counts, set_dropout)
from benchkit.registry import BACKBONES


def _tiny(default_freeze=0, default_dropout=None) -> Backbone:
    """stem conv(3->4) + BN; 3 stages conv + BN + Dropout(0.1); a Linear after the stages."""
    stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    stages = [nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.1)) for _ in range(3)]
    body = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    return Backbone(body, 4, stem=[stem], stages=stages, input_size=16, default_freeze=default_freeze,
                    default_dropout=default_dropout)


STEM = 3 * 4 * 9 + 4 + 2 * 4          # conv weight + bias, BN weight + bias
STAGE = 4 * 4 * 9 + 4 + 2 * 4
TAIL = 4 * 4 + 4


def test_parameter_counts_by_hand():
    backbone = _tiny()
    assert parameter_counts(backbone) == {"total": STEM + 3 * STAGE + TAIL,
                                          "trainable": STEM + 3 * STAGE + TAIL, "frozen": 0}


@pytest.mark.parametrize("freeze, frozen", [
    (0, 0), (None, 0), (1, STEM + STAGE), (3, STEM + 3 * STAGE), ("all", STEM + 3 * STAGE + TAIL),
    ({"stages": 2}, STEM + 2 * STAGE), ({"stages": 2, "stem": False}, 2 * STAGE),
    ({"stages": "all"}, STEM + 3 * STAGE), ({"modules": ["2"]}, STAGE),
    ({"modules": ["6"], "stem": True}, STEM + TAIL), ({"stages": 1, "modules": ["1.0"]}, STEM + STAGE),
])
def test_freeze_forms_freeze_exactly(freeze, frozen):
    backbone = _tiny()
    apply_freeze(backbone, freeze)
    assert parameter_counts(backbone)["frozen"] == frozen


def test_none_uses_default_freeze():
    backbone = _tiny(default_freeze={"modules": ["1"]})
    apply_freeze(backbone, None)
    assert frozen_modules(backbone) == [backbone.stages[0]]
    assert parameter_counts(backbone)["frozen"] == STAGE


@pytest.mark.parametrize("freeze, message", [
    (4, "valid: 0..3"), (-1, "valid: 0..3"), ({"stages": 5}, "valid: 0..3"),
    ({"modules": ["9"]}, "top-level modules are"), ({"modules": ["1.5"]}, "does not exist"),
    ({"layers": 1}, "valid keys"), ("some", "freeze must be"), (True, "freeze must be"),
])
def test_bad_freeze_values_name_the_valid_range(freeze, message):
    with pytest.raises(ValueError, match=message):
        apply_freeze(_tiny(), freeze)


def test_no_stages_rejects_positive_freeze():
    backbone = Backbone(nn.Linear(3, 3), 3)
    with pytest.raises(ValueError, match="lists no stages"):
        apply_freeze(backbone, 1)
    apply_freeze(backbone, "all")
    assert parameter_counts(backbone)["trainable"] == 0


def test_dropout_reaches_only_trainable_parts():
    backbone = _tiny(default_dropout=0.4)
    apply_freeze(backbone, 1)
    assert set_dropout(backbone, None) == 2
    assert dropout_rates(backbone) == {"body.1.2": 0.1, "body.2.2": 0.4, "body.3.2": 0.4}
    assert set_dropout(backbone, 0.25) == 2
    assert dropout_rates(backbone)["body.3.2"] == 0.25
    with pytest.raises(ValueError):
        set_dropout(backbone, 1.0)


def test_no_dropout_anywhere_leaves_layers_alone():
    backbone = _tiny()
    assert set_dropout(backbone, None) == 0
    assert set(dropout_rates(backbone).values()) == {0.1}


def test_frozen_batchnorm_keeps_running_stats_in_training():
    torch.manual_seed(0)
    backbone = _tiny()
    apply_freeze(backbone, 1)
    before = {n: b.clone() for n, b in backbone.named_buffers()}
    backbone.train()
    assert keep_frozen_in_eval(backbone) == 2
    backbone(torch.randn(4, 3, 8, 8) * 3 + 1)
    after = dict(backbone.named_buffers())
    for name in ("body.0.1.running_mean", "body.0.1.running_var", "body.1.1.running_mean"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["body.2.1.running_mean"], after["body.2.1.running_mean"])
    assert backbone.stages[0][1].training is False and backbone.stages[1][1].training is True


def test_norm_with_all_parameters_off_counts_as_frozen():
    backbone = _tiny()
    backbone.stages[2][1].requires_grad_(False)
    backbone.train()
    assert keep_frozen_in_eval(backbone) == 1 and not backbone.stages[2][1].training


def test_freezing_survives_deepcopy():
    backbone = _tiny()
    apply_freeze(backbone, 2)
    clone = copy.deepcopy(backbone)
    assert frozen_modules(clone)[0] is clone.stem[0]
    assert clone.stem[0] is clone.body[0]
    clone.train()
    assert keep_frozen_in_eval(clone) == 3


# --- every registered backbone --------------------------------------------------------------------

NAMES = BACKBONES.names()
SMALL = {"maxvit_t": {"input_size": 64, "partition_size": 2}}


@functools.lru_cache(maxsize=None)
def _built(name: str) -> Backbone:
    torch.manual_seed(0)
    return BACKBONES.create(name, **SMALL.get(name, {}))


def _fresh(name: str) -> Backbone:
    return copy.deepcopy(_built(name))


def _ids(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


@pytest.mark.parametrize("name", NAMES)
def test_stage_freezing_and_dropout_rules(name):
    backbone = _fresh(name)
    stages = len(backbone.stages)
    with pytest.raises(ValueError, match=f"valid: 0..{stages}"):
        apply_freeze(backbone, stages + 1)
    n = min(2, stages)
    apply_freeze(backbone, n)
    expected = _ids(backbone.stem + backbone.stages[:n])
    assert {id(p) for p in backbone.parameters() if not p.requires_grad} == expected
    size = sum(p.numel() for p in backbone.parameters() if id(p) in expected)
    assert parameter_counts(backbone)["frozen"] == size > 0

    frozen = {id(m) for part in frozen_modules(backbone) for m in part.modules()}
    before = {n: m.p for n, m in backbone.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd)}
    assert set_dropout(backbone, 0.37) >= 1
    for module_name, module in backbone.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            assert module.p == (before[module_name] if id(module) in frozen else 0.37), module_name
    if isinstance(getattr(backbone.body, "drop_rate", None), float):
        assert backbone.body.drop_rate == 0.37

    apply_freeze(backbone, "all")
    counts = parameter_counts(backbone)
    assert counts["trainable"] == 0 and counts["frozen"] == counts["total"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_frozen_norm_statistics_do_not_move(name):
    backbone = _fresh(name)
    apply_freeze(backbone, 1)
    frozen_norms = [m for part in frozen_modules(backbone) for m in part.modules()
                    if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    if not frozen_norms:
        pytest.skip(f"{name} has no norm layer with running statistics in its stem or first stage")
    before = [m.running_mean.clone() for m in frozen_norms]
    backbone.train()
    keep_frozen_in_eval(backbone)
    size = SMALL.get(name, {}).get("input_size", 32)
    with torch.no_grad():
        backbone(torch.randn(2, 3, size, size) * 2 + 0.5)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, frozen_norms))
    trainable_norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                       and m.track_running_stats and all(m is not f for f in frozen_norms)]
    assert any(m.training for m in trainable_norms)
