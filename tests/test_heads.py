"""Heads: the generic contract over every registered head, then hand-computed values per head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from sklearn.metrics import cohen_kappa_score

from benchkit.errors import ConfigError
from benchkit.models.head import Head, Prediction, generic_decodings, mean_estimate
from benchkit.models.grader import create_head
from benchkit.registry import HEADS
from benchkit.evaluation.metrics import quadratic_weighted_kappa
from benchkit.heads._calibration import fit_cut_points
from benchkit.heads._common import inverse_softplus
from benchkit.heads.soft_label import SOFT_TARGETS, soft_targets

HEAD_NAMES = HEADS.names()
FIRST_PARTY = ["clm", "coral", "corn", "regression", "soft_label", "softmax"]


def weighted_loss(head: Head, outputs: torch.Tensor, targets: torch.Tensor, weights) -> torch.Tensor:
    """The head's training loss with ``weights`` set as its class weights (then unset again)."""
    head.set_class_weights(weights)
    try:
        return head.loss(outputs, targets)
    finally:
        head.set_class_weights(None)


def decodings(head: Head, outputs: torch.Tensor, include_unfitted: bool = False) -> dict[str, Prediction]:
    """Every decoding of the head's estimate of ``outputs``."""
    return head.decode_estimate(head.estimate(outputs), include_unfitted)


def calibrate(head: Head, outputs: torch.Tensor, targets: torch.Tensor) -> dict | None:
    """Fit the head's calibrated decoding on the estimate of validation ``outputs``."""
    return head.calibrate_estimate(head.estimate(outputs), targets)


def _sp(x: float) -> float:
    """softplus written out: -log sigmoid(-x)."""
    return math.log1p(math.exp(x))


def _batch(num_classes: int, n: int = 24, features: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.arange(n) % num_classes
    return x, y


def _output_width(name: str, k: int) -> int:
    return {"regression": 1, "softmax": k, "soft_label": k}.get(name, k - 1)


# ---------------------------------------------------------------- generic contract


def test_first_party_heads_are_registered():
    assert set(FIRST_PARTY) <= set(HEAD_NAMES)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_class_attributes(name):
    cls = HEADS.get(name)
    assert issubclass(cls, Head)
    assert isinstance(cls.has_probabilities, bool)
    assert isinstance(cls.decodings, tuple) and cls.decodings
    if name in FIRST_PARTY:
        assert cls.has_probabilities is (name != "regression")


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_decoding_goes_through_an_averageable_estimate(name):
    """``predict`` is the decoded estimate; the mean of one estimate is itself; every decoding is offered."""
    head = HEADS.get(name)(5, 6).eval()
    x, y = _batch(6, n=40)
    with torch.no_grad():
        out = head(x * 3)
    estimate = head.estimate(out)
    assert estimate and all(v.dtype == torch.float32 and v.shape[0] == 40 for v in estimate.values())
    assert all(((v >= 0) & (v <= 5)).all() for v in estimate.values())
    decoded, pred = head.decode_estimate(mean_estimate([estimate]), True)[head.decode], head.predict(out)
    assert torch.equal(decoded.level, pred.level) and torch.equal(decoded.score, pred.score)
    assert decoded.probs is None or torch.equal(decoded.probs, pred.probs)
    assert set(head.decode_estimate(estimate, include_unfitted=True)) == set(head.decodings)
    twice = mean_estimate([estimate, {k: v.flip(0) for k, v in estimate.items()}])
    for key, value in twice.items():
        torch.testing.assert_close(value, (estimate[key] + estimate[key].flip(0)) / 2)


class _PredictOnly(Head):
    """A third-party head that implements only ``predict``: it still averages and decodes generically."""

    has_probabilities = True

    def forward(self, features):
        return features

    def predict(self, outputs):
        probs = torch.softmax(outputs, 1)
        return Prediction(probs.argmax(1), (probs * torch.arange(probs.shape[1])).sum(1), probs)


def test_a_head_with_only_predict_gets_generic_estimates_and_decoding():
    head = _PredictOnly(3, 3)
    out = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    estimate = head.estimate(out)
    assert set(estimate) == {"score", "probs"}
    decoded = head.decode_estimate(mean_estimate([estimate, estimate]))["default"]
    assert decoded.level.tolist() == [1, 0] and torch.equal(decoded.probs, head.predict(out).probs)
    assert generic_decodings({"score": torch.tensor([0.4, 1.6, -0.2])}, 3)["default"].level.tolist() == [0, 2, 0]


class _UnboundedScore(Head):
    """A third-party head whose ``predict`` gives a level and an unbounded score (a plain linear regression)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes, outputs=1)

    def predict(self, outputs):
        score = outputs[:, 0]
        return Prediction(torch.round(score).clamp(0, self.num_classes - 1).long(), score)


def test_generic_decoding_of_a_score_beyond_the_levels_gives_the_nearest_level():
    """Test-time views, ensembles and ``benchkit predict`` decode the estimate generically: a level K
    would index past the class names."""
    head = _UnboundedScore(1, 3)
    out = torch.tensor([[5.7], [-1.0], [1.2], [2.4]])
    decoded = head.decode_estimate(mean_estimate([head.estimate(out), head.estimate(out)]))["default"]
    assert decoded.level.tolist() == head.predict(out).level.tolist() == [2, 0, 1, 2]


@pytest.mark.parametrize("k", [2, 6])
@pytest.mark.parametrize("name", HEAD_NAMES)
def test_forward_loss_backward(name, k):
    head = HEADS.get(name)(5, k)
    x, y = _batch(k)
    out = head(x)
    if name in FIRST_PARTY:
        assert out.shape == (len(x), _output_width(name, k))
    loss = head.loss(out, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("k", [2, 6])
@pytest.mark.parametrize("name", HEAD_NAMES)
def test_predict_shapes_and_ranges(name, k):
    head = HEADS.get(name)(5, k).eval()
    x, _ = _batch(k, n=40)
    with torch.no_grad():
        out = head(x * 3)
    pred = head.predict(out)
    assert pred.level.shape == (40,) and pred.level.dtype == torch.long
    assert pred.score.shape == (40,) and pred.score.is_floating_point()
    assert int(pred.level.min()) >= 0 and int(pred.level.max()) <= k - 1
    assert float(pred.score.min()) >= 0 and float(pred.score.max()) <= k - 1 + 1e-5
    if head.has_probabilities:
        assert pred.probs.shape == (40, k)
        assert float(pred.probs.min()) >= 0
        torch.testing.assert_close(pred.probs.sum(1), torch.ones(40), atol=1e-5, rtol=0)
    else:
        assert pred.probs is None


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_decodings_cover_the_declared_ones(name):
    head = HEADS.get(name)(5, 4)
    x, y = _batch(4)
    out = head(x).detach()
    calibrate(head, out, y)
    decoded = decodings(head, out)
    assert set(decoded) == set(head.decodings)
    for pred in decoded.values():
        assert isinstance(pred, Prediction) and pred.level.shape == (len(x),)
    torch.testing.assert_close(head.predict(out).level, decoded[head.decode].level)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_bfloat16_autocast_with_large_features(name):
    head = HEADS.get(name)(5, 6)
    x, y = _batch(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x * 1e3)
        loss_inside = weighted_loss(head, out, y, torch.linspace(0.5, 2, 6))
    loss = weighted_loss(head, out.float(), y, torch.linspace(0.5, 2, 6))
    assert torch.isfinite(loss_inside) and torch.isfinite(loss)
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    pred = head.predict(out.detach())
    assert torch.isfinite(pred.score).all()


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_float16_huge_logits_keep_loss_and_gradient_finite(name):
    k = 6
    head = HEADS.get(name)(5, k)
    x, y = _batch(k)
    width = head(x).shape[1]
    signs = torch.where(torch.rand(len(x), width, generator=torch.Generator().manual_seed(1)) > 0.5, 1.0, -1.0)
    out = (signs * 1e4).half().requires_grad_()
    loss = weighted_loss(head, out, y, torch.linspace(0.5, 2, k))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(out.grad).all()
    pred = head.predict(out.detach())
    assert torch.isfinite(pred.score).all()
    if pred.probs is not None:
        assert torch.isfinite(pred.probs).all()


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_class_weights_weight_samples_by_true_class(name):
    k = 5
    head = HEADS.get(name)(5, k)
    x, y = _batch(k, n=30)
    with torch.no_grad():
        out = head(x * 2)
    plain = head.loss(out, y)
    torch.testing.assert_close(weighted_loss(head, out, y, torch.ones(k)), plain)
    torch.testing.assert_close(weighted_loss(head, out, y, torch.full((k,), 3.0)), plain)
    weighted = weighted_loss(head, out, y, torch.tensor([1.0, 5.0, 0.2, 2.0, 0.5]))
    assert torch.isfinite(weighted) and abs(float(weighted - plain)) > 1e-4
    with pytest.raises(ValueError, match="class_weights has 3 values for 5 classes"):
        weighted_loss(head, out, y, torch.ones(3))
    head.set_class_weights([1.0, 5.0, 0.2, 2.0, 0.5])  # set once, used by every training loss
    torch.testing.assert_close(head.loss(out, y), weighted)
    with head.unweighted():  # validation losses
        torch.testing.assert_close(head.loss(out, y), plain)
    torch.testing.assert_close(head.loss(out, y), weighted)
    assert "class_weights" not in head.state_dict()


def _categorical_nll_by_hand(name: str, out: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per-sample losses written out: -log p(y) (softmax, CLM logit), cross-entropy against the binomial row."""
    losses = []
    for row, level in zip(out.tolist(), y.tolist()):
        if name == "clm":
            cumulative = [0.0] + [1 / (1 + math.exp(-z)) for z in row] + [1.0]  # P(y <= k) = sigmoid(z_k)
            losses.append(-math.log(cumulative[level + 1] - cumulative[level]))
            continue
        log_norm = math.log(sum(math.exp(v) for v in row))
        log_p = [v - log_norm for v in row]
        if name == "softmax":
            losses.append(-log_p[level])
        else:
            n, p = len(row) - 1, 0.1 + 0.8 * level / (len(row) - 1)  # binomial soft target of this level
            target = [math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(len(row))]
            losses.append(-sum(t * lp for t, lp in zip(target, log_p)))
    return losses


@pytest.mark.parametrize("name", ["softmax", "clm", "soft_label"])
def test_class_weighted_loss_of_categorical_heads_by_hand(name):
    k = 4
    head = HEADS.get(name)(3, k)
    if name == "clm":
        out = torch.tensor([[-1.0, 0.2, 1.5], [-0.5, 0.0, 2.0], [-2.0, -1.0, 0.5], [0.1, 0.6, 0.9], [-3.0, 1.0, 3.0]])
    else:
        out = torch.tensor([[2.0, 0.1, -1.0, 0.3], [0.0, 1.5, 0.2, -0.4], [-1.0, 0.3, 0.8, 1.9],
                            [0.5, 0.5, 2.2, 0.1], [1.0, -2.0, 0.0, 0.7]])
    y = torch.tensor([0, 1, 1, 3, 2])
    weights = [0.5, 2.0, 1.0, 3.0]
    losses = _categorical_nll_by_hand(name, out, y)
    assert float(head.loss(out, y)) == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    by_hand = sum(weights[t] * l for t, l in zip(y.tolist(), losses)) / sum(weights[t] for t in y.tolist())
    assert float(weighted_loss(head, out, y, torch.tensor(weights))) == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_invalid_options_raise_value_error(name):
    cls = HEADS.get(name)
    with pytest.raises(ValueError, match="dropout"):
        cls(5, 4, dropout=1.5)
    with pytest.raises(ValueError, match="dropout"):
        cls(5, 4, dropout="half")
    with pytest.raises(ValueError, match="decode"):
        cls(5, 4, decode="nearest")
    with pytest.raises(ValueError, match="at least 2 classes"):
        cls(5, 1)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_targets_outside_the_levels_are_rejected(name):
    head = HEADS.get(name)(5, 4)
    x, _ = _batch(4, n=3)
    with pytest.raises(ValueError, match="levels 0..3"):
        head.loss(head(x), torch.tensor([0, 1, 4]))


def test_create_head_reports_unknown_and_bad_options():
    with pytest.raises(ConfigError, match="unknown option.*'loss_fn'"):
        create_head("regression", 8, 6, {"loss_fn": "l1"})
    with pytest.raises(ConfigError, match="head 'coral'.*threshold"):
        create_head("coral", 8, 6, {"threshold": 1.5})
    head = create_head("regression", 8, 6, {"loss": "huber", "huber_delta": 0.2, "dropout": 0.5})
    assert head.loss_name == "huber" and head.dropout.p == 0.5


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_calibration_travels_in_the_state_dict(name):
    k = 5
    head = HEADS.get(name)(5, k)
    x, y = _batch(k, n=60)
    out = head(x).detach()
    calibrate(head, out, y)
    clone = HEADS.get(name)(5, k)
    clone.load_state_dict(head.state_dict())
    for decoding, pred in decodings(head, out).items():
        other = decodings(clone, out)[decoding]
        torch.testing.assert_close(pred.level, other.level)
        torch.testing.assert_close(pred.score, other.score)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_learns_a_noisy_monotone_level(name):
    """A tiny linear model + head on a 1-D feature beats the majority class by a wide margin."""
    torch.manual_seed(0)
    k = 5
    g = torch.Generator().manual_seed(0)

    def sample(n):
        x = torch.rand(n, 1, generator=g) * 4 - 2
        noisy = (x[:, 0] + 2) / 4 * k + 0.4 * torch.randn(n, generator=g)
        return x, noisy.floor().clamp(0, k - 1).long()

    x_train, y_train = sample(512)
    x_test, y_test = sample(512)
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), HEADS.get(name)(4, k))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        model[1].loss(model(x_train), y_train).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model[1].predict(model(x_test))
    accuracy = float((pred.level == y_test).float().mean())
    majority = float(torch.bincount(y_test, minlength=k).max()) / len(y_test)
    assert accuracy > majority + 0.4, (accuracy, majority)
    assert float((pred.score - y_test).abs().mean()) < 0.6


# ---------------------------------------------------------------- calibration helpers


def test_qwk_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 200)
    p = np.clip(y + rng.integers(-2, 3, 200), 0, 5)
    assert quadratic_weighted_kappa(y, p, 6) == pytest.approx(cohen_kappa_score(y, p, weights="quadratic"))


def test_fitted_cut_points_are_monotone_and_never_worse_than_rounding():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 150)
    scores = np.clip(y * 0.6 + 1.0 + rng.normal(0, 0.5, 150), 0, 5)  # compressed and shifted: rounding is poor
    cuts = fit_cut_points(scores, y, 6)
    assert np.all(np.diff(cuts) > 0)
    rounding = np.arange(5) + 0.5
    fitted_qwk = quadratic_weighted_kappa(y, np.searchsorted(cuts, scores), 6)
    rounding_qwk = quadratic_weighted_kappa(y, np.searchsorted(rounding, scores), 6)
    assert fitted_qwk >= rounding_qwk
    assert fitted_qwk > rounding_qwk + 0.05, (fitted_qwk, rounding_qwk)  # fitting did something
    # a local optimum: no single cut moved to any midpoint between its neighbours does better
    points = np.unique(scores)
    for j in range(5):
        low = cuts[j - 1] if j else -np.inf
        high = cuts[j + 1] if j < 4 else np.inf
        for candidate in (points[:-1] + points[1:]) / 2:
            if low < candidate < high:
                trial = cuts.copy()
                trial[j] = candidate
                assert quadratic_weighted_kappa(y, np.searchsorted(trial, scores), 6) <= fitted_qwk + 1e-12
    # where rounding is already perfect, fitting keeps it perfect
    exact = y + rng.uniform(-0.3, 0.3, 150)
    perfect = fit_cut_points(exact, y, 6)
    assert np.array_equal(np.searchsorted(perfect, exact), y)


# ---------------------------------------------------------------- regression


def test_regression_l1_mse_huber_on_two_samples():
    head = HEADS.get("regression")(3, 5)
    out = torch.tensor([[0.0], [math.log(3.0)]])  # sigmoid: 0.5 and 0.75
    y = torch.tensor([2, 4])  # scaled: 0.5 and 1.0 -> errors 0 and 0.25
    assert float(head.loss(out, y)) == pytest.approx(0.125)
    assert float(weighted_loss(head, out, y, torch.tensor([1.0, 1.0, 1.0, 1.0, 3.0]))) == pytest.approx(0.75 / 4)
    head.loss_name = "mse"
    assert float(head.loss(out, y)) == pytest.approx(0.0625 / 2)
    head.loss_name, head.huber_delta = "huber", 0.1
    assert float(head.loss(out, y)) == pytest.approx((0.1 * (0.25 - 0.05)) / 2)
    pred = head.predict(out)
    assert pred.score.tolist() == pytest.approx([2.0, 3.0])
    assert pred.level.tolist() == [2, 3]


def test_regression_options_are_validated():
    cls = HEADS.get("regression")
    with pytest.raises(ValueError, match="'loss' must be one of 'l1', 'mse', 'huber', got 'l2'"):
        cls(3, 5, loss="l2")
    with pytest.raises(ValueError, match="huber_delta"):
        cls(3, 5, huber_delta=0)
    with pytest.raises(ValueError, match="calibrate_metric"):
        cls(3, 5, calibrate_metric="f1")


def _shifted_regression_outputs(k=5, n=300, shift=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    score = (y.float() + shift + 0.15 * torch.randn(n, generator=g)).clamp(0.01, k - 1.01)
    return torch.logit(score / (k - 1))[:, None], y


@pytest.mark.parametrize("metric", ["qwk", "mae"])
def test_calibrated_cut_points_fix_systematically_shifted_scores(metric):
    k = 5
    out, y = _shifted_regression_outputs(k)
    head = HEADS.get("regression")(3, k, decode="calibrated", calibrate_metric=metric)
    rounded = decodings(head, out)["round"].level
    assert set(decodings(head, out)) == {"round"}
    report = calibrate(head, out, y)
    calibrated = head.predict(out).level
    assert np.all(np.diff(report["cut_points"]) > 0)
    qwk_round = quadratic_weighted_kappa(y.numpy(), rounded.numpy(), k)
    qwk_cal = quadratic_weighted_kappa(y.numpy(), calibrated.numpy(), k)
    assert qwk_cal > qwk_round + 0.03
    assert float((calibrated == y).float().mean()) > float((rounded == y).float().mean()) + 0.4
    torch.testing.assert_close(head.decoder.cut_points[1:3], torch.tensor([1.5, 2.5]) + 0.7, atol=0.25, rtol=0)
    fresh_out, fresh_y = _shifted_regression_outputs(k, seed=1)
    assert quadratic_weighted_kappa(fresh_y.numpy(), head.predict(fresh_out).level.numpy(), k) > \
        quadratic_weighted_kappa(fresh_y.numpy(), decodings(head, fresh_out)["round"].level.numpy(), k)


# ---------------------------------------------------------------- softmax


def test_softmax_label_smoothing_and_decodings():
    head = HEADS.get("softmax")(3, 3, label_smoothing=0.1)
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.1, 1.0]])
    y = torch.tensor([0, 2, 0])
    torch.testing.assert_close(head.loss(out, y), F.cross_entropy(out, y, label_smoothing=0.1))
    decoded = decodings(head, torch.tensor([[3.0, 0.0, 2.9]]))
    p = torch.softmax(torch.tensor([3.0, 0.0, 2.9]), 0)
    assert decoded["argmax"].level.item() == 0
    assert decoded["expected"].score.item() == pytest.approx(float(p[1] + 2 * p[2]))
    assert decoded["expected"].level.item() == 1


# ---------------------------------------------------------------- CORAL


def test_coral_loss_by_hand():
    head = HEADS.get("coral")(3, 3)
    logits = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    y = torch.tensor([1, 0])
    first = _sp(-1.0) + _sp(-1.0)   # [y>0]=1 at logit 1, [y>1]=0 at logit -1
    second = _sp(0.5) + _sp(2.0)    # [y>0]=0, [y>1]=0
    assert float(head.loss(logits, y)) == pytest.approx((first + second) / 2, rel=1e-6)
    weighted = (2.0 * first + 1.0 * second) / 3.0
    assert float(weighted_loss(head, logits, y, torch.tensor([1.0, 2.0, 1.0]))) == pytest.approx(weighted, rel=1e-6)


def test_coral_loss_matches_coral_pytorch_formula():
    k = 6
    head = HEADS.get("coral")(3, k)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, k - 1, generator=g) * 3
    y = torch.randint(0, k, (20,), generator=g)
    levels = (y[:, None] > torch.arange(k - 1)).float()
    term = F.logsigmoid(logits) * levels + (F.logsigmoid(logits) - logits) * (1 - levels)
    torch.testing.assert_close(head.loss(logits, y), (-term.sum(1)).mean())


def test_coral_and_corn_match_the_coral_pytorch_package():
    losses = pytest.importorskip("coral_pytorch.losses")
    dataset = pytest.importorskip("coral_pytorch.dataset")
    k = 5
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(16, k - 1, generator=g) * 2
    y = torch.randint(0, k, (16,), generator=g)
    coral, corn = HEADS.get("coral")(3, k), HEADS.get("corn")(3, k)
    torch.testing.assert_close(coral.loss(logits, y),
                               losses.coral_loss(logits, dataset.levels_from_labelbatch(y, k)))
    torch.testing.assert_close(corn.loss(logits, y), losses.corn_loss(logits, y, k))
    torch.testing.assert_close(corn.predict(logits).level, dataset.corn_label_from_logits(logits))
    torch.testing.assert_close(coral.predict(logits).level, dataset.proba_to_label(torch.sigmoid(logits)))


def test_coral_cumulative_probabilities_are_monotone_by_construction():
    k = 7
    for seed in range(5):
        torch.manual_seed(seed)
        head = HEADS.get("coral")(4, k)
        with torch.no_grad():
            for p in head.parameters():
                p.copy_(torch.randn_like(p) * 5)
        assert torch.all(head.biases().diff() < 0)
        out = head(torch.randn(50, 4) * 3).detach()
        exceed = torch.sigmoid(out)
        assert torch.all(exceed.diff(dim=1) <= 0)
        probs = head.predict(out).probs
        assert float(probs.min()) >= 0
        raw = torch.cat([1 - exceed[:, :1], exceed[:, :-1] - exceed[:, 1:], exceed[:, -1:]], 1)
        torch.testing.assert_close(probs, raw)
        torch.testing.assert_close(head.predict(out).score, exceed.sum(1))


def test_coral_calibrated_threshold_recovers_underconfident_outputs():
    k = 4
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, k, (200,), generator=g)
    exceed = torch.where(y[:, None] > torch.arange(k - 1), 0.3, 0.05)
    exceed = (exceed + 0.02 * torch.rand(exceed.shape, generator=g))
    logits = torch.logit(exceed)
    head = HEADS.get("coral")(3, k, decode="calibrated")
    before = decodings(head, logits)["threshold"].level
    assert int(before.max()) == 0
    report = calibrate(head, logits, y)
    assert 0.07 < report["threshold"] < 0.3
    after = head.predict(logits).level
    assert quadratic_weighted_kappa(y.numpy(), after.numpy(), k) == pytest.approx(1.0)
    assert report["valid_after"] > report["valid_before"]


# ---------------------------------------------------------------- CORN


def test_corn_loss_by_hand():
    head = HEADS.get("corn")(3, 3)
    logits = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-0.3, 0.7]])
    y = torch.tensor([1, 0, 2])
    # task 0, all samples, targets [1, 0, 1]; task 1, samples with y >= 1 (0 and 2), targets [0, 1]
    task0 = [_sp(-1.0), _sp(0.5), _sp(0.3)]
    task1 = [_sp(-1.0), _sp(-0.7)]
    assert float(head.loss(logits, y)) == pytest.approx(sum(task0 + task1) / 5, rel=1e-6)
    w = [1.0, 2.0, 4.0]
    weighted = (w[1] * task0[0] + w[0] * task0[1] + w[2] * task0[2] + w[1] * task1[0] + w[2] * task1[1])
    total = w[1] + w[0] + w[2] + w[1] + w[2]
    assert float(weighted_loss(head, logits, y, torch.tensor(w))) == pytest.approx(weighted / total, rel=1e-6)


def test_corn_probabilities_are_conditional_products_and_sum_to_one():
    k = 6
    logits = torch.randn(30, k - 1, generator=torch.Generator().manual_seed(3)) * 4
    head = HEADS.get("corn")(3, k)
    pred = head.predict(logits)
    exceed = torch.cumprod(torch.sigmoid(logits), 1)
    torch.testing.assert_close(pred.score, exceed.sum(1))
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(30))
    assert float(pred.probs.min()) >= 0
    torch.testing.assert_close(pred.probs[:, -1], exceed[:, -1])
    torch.testing.assert_close(pred.probs[:, 0], 1 - exceed[:, 0])


# ---------------------------------------------------------------- CLM


def _clm_with_known_cut_points(link: str):
    head = HEADS.get("clm")(1, 4, link=link)
    with torch.no_grad():
        head.first_cut.fill_(-1.0)
        head.cut_gaps.fill_(inverse_softplus(1.5))
        head.linear.weight.fill_(2.0)
    return head


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_clm_probabilities_and_loss_by_hand(link):
    head = _clm_with_known_cut_points(link)
    torch.testing.assert_close(head.cut_points().detach(), torch.tensor([-1.0, 0.5, 2.0]))
    out = head(torch.tensor([[0.25], [-1.0]]))  # f = 0.5 and -2
    cdf = (lambda v: 1 / (1 + math.exp(-v))) if link == "logit" else norm.cdf
    expected = []
    for f in (0.5, -2.0):
        c = [cdf(t - f) for t in (-1.0, 0.5, 2.0)]
        expected.append([c[0], c[1] - c[0], c[2] - c[1], 1 - c[2]])
    probs = head.predict(out.detach()).probs
    torch.testing.assert_close(probs, torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=1e-5)
    for y in range(4):
        loss = head.loss(out, torch.tensor([y, y])).detach()
        hand = -(math.log(expected[0][y]) + math.log(expected[1][y])) / 2
        assert float(loss) == pytest.approx(hand, rel=1e-5)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_clm_loss_in_the_tails_stays_finite_and_accurate(link):
    head = HEADS.get("clm")(1, 3, link=link)
    z = torch.tensor([[30.0, 31.0], [-31.0, -30.0]], dtype=torch.float64).float().requires_grad_()
    loss = head.loss(z, torch.tensor([1, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    loss = loss.detach()
    if link == "logit":
        # P = sigmoid(31) - sigmoid(30) ~ e^-30 (1 - e^-1); the log must not collapse to a clamp
        hand = -(math.log(math.exp(-30) * (1 - math.exp(-1))) + math.log(math.exp(-30) * (1 - math.exp(-1)))) / 2
        assert float(loss) == pytest.approx(hand, rel=1e-3)
    else:
        hand = -(norm.logsf(30.0) + math.log1p(-math.exp(norm.logsf(31.0) - norm.logsf(30.0))))
        assert float(loss) == pytest.approx(hand, rel=1e-3)


def test_clm_rejects_unknown_link():
    with pytest.raises(ValueError, match="'link' must be one of 'logit', 'probit'"):
        HEADS.get("clm")(3, 4, link="cloglog")


# ---------------------------------------------------------------- soft labels


@pytest.mark.parametrize("soft", SOFT_TARGETS)
@pytest.mark.parametrize("k", [2, 3, 6, 10])
def test_soft_targets_are_unimodal_distributions_peaked_at_the_label(soft, k):
    for params in ({"tau": 0.3, "alpha": 0.01}, {"tau": 2.0, "alpha": 0.1}):
        targets = soft_targets(soft, k, **params)
        assert targets.shape == (k, k)
        assert float(targets.min()) >= 0
        torch.testing.assert_close(targets.sum(1), torch.ones(k, dtype=torch.float64))
        assert targets.argmax(1).tolist() == list(range(k))
        steps = targets.diff(dim=1)
        for y in range(k):
            assert torch.all(steps[y, :y] >= -1e-12) and torch.all(steps[y, y:] <= 1e-12)


def test_soft_targets_match_published_tables():
    """dlordinal's documented examples for 5 classes (binomial, exponential tau=1, triangular alpha2=0.01)."""
    binomial = [[6.561e-01, 2.916e-01, 4.860e-02, 3.600e-03, 1.000e-04],
                [2.401e-01, 4.116e-01, 2.646e-01, 7.560e-02, 8.100e-03],
                [6.250e-02, 2.500e-01, 3.750e-01, 2.500e-01, 6.250e-02]]
    exponential = [[0.63640865, 0.23412166, 0.08612854, 0.03168492, 0.01165623],
                   [0.19151597, 0.52059439, 0.19151597, 0.07045479, 0.02591887]]
    triangular = [[0.98845494, 0.01154505, 0.0, 0.0, 0.0],
                  [0.01, 0.98, 0.01, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 0.00505524, 0.99494475]]
    torch.testing.assert_close(soft_targets("binomial", 5)[:3], torch.tensor(binomial, dtype=torch.float64))
    torch.testing.assert_close(soft_targets("exponential", 5)[:2], torch.tensor(exponential, dtype=torch.float64))
    torch.testing.assert_close(soft_targets("triangular", 5, alpha=0.01)[[0, 1, 4]],
                               torch.tensor(triangular, dtype=torch.float64), atol=1e-6, rtol=0)


def test_soft_label_loss_is_cross_entropy_against_the_soft_row():
    head = HEADS.get("soft_label")(3, 4, soft="poisson", tau=0.5, eta=0.8)
    out = torch.tensor([[0.2, 1.0, -0.5, 0.3], [2.0, 0.0, 0.1, -1.0]])
    y = torch.tensor([1, 3])
    soft = 0.2 * torch.eye(4, dtype=torch.float64) + 0.8 * soft_targets("poisson", 4, tau=0.5)
    hand = -(soft[y].float() * torch.log_softmax(out, 1)).sum(1).mean()
    torch.testing.assert_close(head.loss(out, y), hand)


def test_soft_label_label_smoothing_mixes_in_the_uniform_distribution():
    head = HEADS.get("soft_label")(3, 4, soft="exponential", tau=0.7, label_smoothing=0.1)
    out = torch.tensor([[0.2, 1.0, -0.5, 0.3], [2.0, 0.0, 0.1, -1.0]])
    y = torch.tensor([0, 2])
    soft = 0.9 * soft_targets("exponential", 4, tau=0.7) + 0.1 / 4
    hand = -(soft[y].float() * torch.log_softmax(out, 1)).sum(1).mean()
    torch.testing.assert_close(head.loss(out, y), hand)
    with pytest.raises(ValueError, match="'label_smoothing'"):
        HEADS.get("soft_label")(3, 4, label_smoothing=1.0)


def test_soft_label_options_apply_only_to_their_family():
    cls = HEADS.get("soft_label")
    with pytest.raises(ValueError, match="'tau' applies only to soft: poisson | exponential"):
        cls(3, 4, soft="binomial", tau=1.0)
    with pytest.raises(ValueError, match="'alpha' applies only to soft: triangular"):
        cls(3, 4, soft="poisson", alpha=0.05)
    with pytest.raises(ValueError, match="'soft' must be one of"):
        cls(3, 4, soft="gaussian")
    with pytest.raises(ValueError, match="'tau' must lie in"):
        cls(3, 4, soft="exponential", tau=0)
    with pytest.raises(ValueError, match="'eta'"):
        cls(3, 4, eta=0)
