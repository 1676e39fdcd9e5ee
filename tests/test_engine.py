"""The engine's promises: the weights it evaluates are ema-pytorch's average of the trained ones, and after
training the eval model holds the selected epoch's weights, for a minimised and a maximised monitor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchkit.config import ModelConfig, TrainConfig
from benchkit.data.decode import ImageArrayDataset, decode_split
from benchkit.data.synthetic import make_synthetic_dataset
from benchkit.evaluation.metrics import compute_metrics
from benchkit.models.grader import build_model
from benchkit.training.engine import Engine
from benchkit.training.transforms import BatchPreprocessor

K = 4


@pytest.fixture(scope="module")
def arrays():
    dataset = make_synthetic_dataset(K, {"train": 48, "valid": 24}, image_size=32, seed=0)
    return {name: (decode_split(split, 32), split.labels) for name, split in dataset.splits.items()}


def _engine(head: str = "regression", **train) -> Engine:
    recipe = {"epochs": 2, "batch_size": 8, "device": "cpu", "optimizer": {"lr": 1e-2}, "augmentation": "none",
              "ema": {"enabled": False}, "early_stopping": {"patience": None}, **train}
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny_cnn", head=head), K)
    prep = BatchPreprocessor([], model.backbone.mean, model.backbone.std)
    return Engine(model, prep, TrainConfig.model_validate(recipe), K)


def _floating_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def ema_by_hand(snapshots: list[dict], beta: float, update_after_step: int, update_every: int,
                power: float = 2 / 3) -> dict:
    """ema-pytorch's documented EMA of the weights after each optimizer step (inv_gamma 1, min_value 0).

    Step 0 copies the weights; then every ``update_every``-th step copies them while the step is at most
    ``update_after_step``, and after that moves towards them with decay ``min(beta, 1 - (1 + t) ** -power)``,
    ``t`` the number of steps since ``update_after_step``.
    """
    ema = None
    for step, weights in enumerate(snapshots):
        if step == 0 or (step % update_every == 0 and step <= update_after_step):
            ema = {k: v.clone() for k, v in weights.items()}
        elif step % update_every == 0:
            decay = min(beta, 1 - (1 + step - update_after_step) ** -power)
            ema = {k: e + (1 - decay) * (weights[k] - e) for k, e in ema.items()}
    return ema


def test_evaluated_weights_are_the_hand_computed_ema_of_the_trained_weights(arrays):
    beta, after, every = 0.6, 3, 2  # 12 steps: copies at 0 and 2, warm-up decay at 4, beta from 6 on
    engine = _engine(ema={"enabled": True, "beta": beta, "update_after_step": after, "update_every": every})
    snapshots = []
    engine.optimizer.register_step_post_hook(lambda *_: snapshots.append(_floating_state(engine.model)))
    train, valid = (ImageArrayDataset(*arrays[s]) for s in ("train", "valid"))
    result = engine.fit(train, valid, seed=0)
    assert len(snapshots) == 12
    expected = ema_by_hand(snapshots, beta, after, every)
    evaluated = _floating_state(engine.eval_model)
    assert evaluated.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(evaluated[name], value, msg=name)
    online = _floating_state(engine.model)
    assert any(not torch.allclose(evaluated[k], online[k]) for k in online), "the EMA equals the online weights"
    assert any(not torch.allclose(evaluated[k], snapshots[0][k]) for k in online), "the EMA never moved"

    # the last validation scored that EMA model, not the online one
    outputs = engine.outputs(valid)
    assert engine.eval_model.head.loss(outputs, torch.as_tensor(valid.labels)).item() == pytest.approx(
        result.history[-1]["valid_loss"], rel=1e-6)
    online_loss = engine.eval_model.head.loss(engine.outputs(valid, model=engine.model),
                                              torch.as_tensor(valid.labels)).item()
    assert online_loss != pytest.approx(result.history[-1]["valid_loss"], rel=1e-6)


@pytest.mark.parametrize("monitor, pick, head", [("loss", np.argmin, "regression"), ("qwk", np.argmax, "regression"),
                                                 ("nll", np.argmin, "softmax")])
def test_after_training_the_eval_model_holds_the_selected_epoch(arrays, monitor, pick, head):
    """Validation levels are the training levels reversed, so learning makes validation worse: the best
    epoch comes early and the last one differs from it."""
    train = ImageArrayDataset(*arrays["train"])
    images, labels = arrays["valid"]
    valid = ImageArrayDataset(images, K - 1 - labels)
    engine = _engine(head, epochs=4, early_stopping={"monitor": monitor, "patience": None})
    result = engine.fit(train, valid, seed=0)
    values = [row[f"valid_{monitor}"] for row in result.history]
    best = int(pick(values))
    assert result.best_epoch == best + 1 and result.best_value == values[best]
    assert result.best_epoch < len(values) and values[-1] != values[best], values  # the toy run's premise

    engine.load_best()
    outputs = engine.outputs(valid)
    head, targets = engine.eval_model.head, torch.as_tensor(valid.labels)
    pred = head.predict(outputs)
    now = {"loss": head.loss(outputs, targets).item(),
           **compute_metrics(valid.labels, pred.level.numpy(), pred.score.numpy(), K,
                             None if pred.probs is None else pred.probs.numpy())}
    assert now[monitor] == pytest.approx(values[best], rel=1e-6)
    for name, value in now.items():
        assert value == pytest.approx(result.history[best][f"valid_{name}"], rel=1e-6, abs=1e-9), name
