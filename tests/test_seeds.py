"""A run's seed decides each of its four random parts, apart from the others: the initial weights, the order
of the training batches, the augmentation draws and the dropout masks. For each part: the same seed draws it
exactly again, another seed draws it differently, while the other parts are recorded apart or held fixed, so
a seed that reaches only some of the parts fails the test of the others. (That every executor gives the same
numbers for a seed, augmentation and dropout on, is in ``tests/test_executors.py``.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchkit.config import ModelConfig, TrainConfig
from benchkit.data.decode import ImageArrayDataset, decode_split
from benchkit.data.synthetic import make_synthetic_dataset
from benchkit.execution.plan import plan
from benchkit.models.grader import build_model, model_for
from benchkit.training.build_inputs import resolve_build
from benchkit.training.engine import Engine
from benchkit.training.transforms import BatchPreprocessor, build_augmentation
from conftest import small_experiment

K = 4
AUGMENTATION = [{"RandomRotation": {"degrees": 20.0, "p": 0.7}},
                {"RandomResizedCrop": {"size": [32, 32], "scale": [0.7, 1.0], "p": 0.6}},
                {"RandomBrightness": {"brightness": [0.8, 1.2], "p": 0.8}}]


@pytest.fixture(scope="module")
def arrays():
    dataset = make_synthetic_dataset(K, {"train": 40, "valid": 16}, image_size=32, seed=0)
    return {name: (decode_split(split, 32), split.labels) for name, split in dataset.splits.items()}


class _RecordedOrder(ImageArrayDataset):
    """The training split, remembering the indices of every batch read from it."""

    def __init__(self, images, labels):
        super().__init__(images, labels)
        self.batches: list[list[int]] = []

    def gather(self, indices):
        self.batches.append([int(i) for i in indices])
        return super().gather(indices)


def _fit(arrays, seed: int, augmentation="none") -> tuple["_Recorder", _RecordedOrder]:
    """Train tiny_cnn (dropout 0.3) for two epochs from the same initial weights whatever ``seed``."""
    recipe = {"epochs": 2, "batch_size": 8, "device": "cpu", "data_on_device": False, "optimizer": {"lr": 1e-2},
              "augmentation": augmentation, "ema": {"enabled": False}, "early_stopping": {"patience": None}}
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone={"name": "tiny_cnn", "dropout": 0.3}, head="regression"), K)
    prep = BatchPreprocessor(build_augmentation(augmentation, 32), model.backbone.mean, model.backbone.std)
    engine = Engine(model, prep, TrainConfig.model_validate(recipe), K)
    train = _RecordedOrder(*arrays["train"])
    recorder = _Recorder(engine)
    engine.fit(train, ImageArrayDataset(*arrays["valid"]), seed=seed)
    return recorder, train


class _Recorder:
    """What the augmentation drew at each call (kornia's parameters) and each training dropout's mask."""

    def __init__(self, engine: Engine):
        self.draws: list[torch.Tensor] = []
        self.dropouts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for transform in engine.preprocessor.augmentation:
            transform.register_forward_hook(self._augmented)
        for module in engine.model.modules():
            if isinstance(module, nn.Dropout):
                module.register_forward_hook(self._dropped)

    def _augmented(self, module, inputs, output) -> None:
        self.draws.append(torch.cat([v.detach().flatten().double() for _, v in sorted(module._params.items())
                                     if isinstance(v, torch.Tensor) and v.numel()]))

    def _dropped(self, module, inputs, output) -> None:
        if module.training and module.p > 0:
            self.dropouts.append((inputs[0].detach().clone(), output.detach().clone()))


def _same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return len(first) == len(second) and all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, second))


def test_the_seed_decides_the_initial_weights(tmp_path):
    _, runs = plan(small_experiment(tmp_path, seeds=[0, 1]))
    specs = [resolve_build(spec, [f"L{i}" for i in range(K)]) for spec in [runs[0], runs[0], runs[1]]]
    weights = [[p.detach().clone() for p in model_for(spec).parameters()] for spec in specs]
    torch.manual_seed(12345)  # the global random state before the build does not matter
    again = [p.detach().clone() for p in model_for(specs[0]).parameters()]
    assert _same(weights[0], weights[1]) and _same(weights[0], again)
    assert not _same(weights[0], weights[2])


def test_the_seed_decides_the_batch_order(arrays):
    orders = [_fit(arrays, seed)[1].batches for seed in (0, 0, 1)]
    assert len(orders[0]) == 10  # 5 batches of 8 in each of 2 epochs
    assert orders[0][:5] != orders[0][5:]  # each epoch draws its own order
    assert orders[0] == orders[1] and orders[0] != orders[2]
    assert sorted(sum(orders[2][:5], [])) == list(range(40))


def test_the_seed_decides_the_augmentation_draws(arrays):
    draws = [_fit(arrays, seed, AUGMENTATION)[0].draws for seed in (0, 0, 1)]
    assert len(draws[0]) == 3 * 10  # three transforms, ten batches
    assert _same(draws[0], draws[1])
    assert not _same(draws[0], draws[2])


def test_the_augmentation_draws_do_not_depend_on_dropout_or_the_batch_order(arrays):
    """Its own stream: turning augmentation on leaves the batch order and the dropout masks as they were."""
    plain, order = _fit(arrays, 0)
    augmented, augmented_order = _fit(arrays, 0, AUGMENTATION)
    assert order.batches == augmented_order.batches
    masks = [[out != 0 for _, out in recorder.dropouts] for recorder in (plain, augmented)]
    both = [(a != 0) & (b != 0) for (a, _), (b, _) in zip(plain.dropouts, augmented.dropouts)]
    assert len(both) == 10
    assert all(torch.equal(a[m], b[m]) for a, b, m in zip(masks[0], masks[1], both))


def test_the_seed_decides_the_dropout_masks(arrays):
    records = [_fit(arrays, seed)[0].dropouts for seed in (0, 0, 1)]
    assert len(records[0]) == 10
    assert _same([o for _, o in records[0]], [o for _, o in records[1]])
    # where both runs fed dropout a non-zero value, a kept value stays non-zero and a dropped one becomes zero
    differing = 0
    for (in0, out0), (in1, out1) in zip(records[0], records[2]):
        seen = (in0 != 0) & (in1 != 0)
        assert seen.float().mean() > 0.5
        differing += int(((out0 != 0) != (out1 != 0))[seen].sum())
    assert differing > 20
