"""Test-time augmentation: views of the run's preprocessing, estimates averaged and decoded by the head; in runs,
the leaderboard and predict."""

import json

import pandas as pd
import pytest
import torch
from torch import nn

from benchkit.cli import main
from benchkit.inference.predict import load_run
from conftest import small_experiment

from benchkit.config import ModelConfig
from benchkit.errors import ConfigError
from benchkit.training.tta import NAMED_VIEWS, build_views, tta_estimate, tta_label
from benchkit.models.backbone import Backbone
from benchkit.models.grader import GraderModel, build_model, create_head
from benchkit.training.runtime import Runtime, forward_all
from benchkit.training.transforms import BatchPreprocessor

ROTATIONS = ["identity", "rot90", "rot180", "rot270"]


def _images(n=10, size=16, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def _forward(model, images):
    """``forward(preprocess)``: the model's raw outputs over ``images`` through the one inference loop."""
    runtime = Runtime.resolve(device="cpu", amp=False, batch_size=2)
    return lambda preprocess: forward_all(model, images, runtime, preprocess)


def _prep():
    return BatchPreprocessor([], mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def _tiny(head: str) -> GraderModel:
    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate({"backbone": "tiny_cnn", "head": {"name": head}}), 4).eval()


def _invariant(head: str) -> GraderModel:
    """Per-pixel features, max-pooled: exactly the same for every rotation and flip of an image."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten())
    return GraderModel(Backbone(body, 8, stages=[body]), create_head(head, 8, 4, {})).eval()


def _decoded(head, estimate):
    return head.decode_estimate(estimate, include_unfitted=True)[head.decode]


def _assert_same(a, b):
    assert torch.equal(a.level, b.level) and torch.equal(a.score, b.score)
    assert (a.probs is None) == (b.probs is None)
    assert a.probs is None or torch.equal(a.probs, b.probs)


@pytest.mark.parametrize("head", ["regression", "softmax", "corn", "coral", "clm"])
def test_identity_only_tta_equals_no_tta_exactly(head):
    model, images, prep = _tiny(head), _images(), _prep()
    forward = _forward(model, images)
    plain = model.head.predict(forward(prep))
    with_tta = tta_estimate(model.head, build_views(["identity"]), prep, forward)
    _assert_same(_decoded(model.head, with_tta), plain)


@pytest.mark.parametrize("head", ["regression", "softmax", "corn"])
def test_rotations_of_a_rotation_invariant_model_change_nothing(head):
    model, images, prep = _invariant(head), _images(), _prep()
    forward = _forward(model, images)
    plain = model.head.predict(forward(prep))
    rotated = tta_estimate(model.head, build_views(ROTATIONS + ["hflip", "transpose"]), prep, forward)
    _assert_same(_decoded(model.head, rotated), plain)


def test_rotations_change_a_model_that_sees_orientation():
    """The control: tiny_cnn is not rotation invariant, so the averaged estimate differs from one view."""
    model, images, prep = _tiny("softmax"), _images(), _prep()
    forward = _forward(model, images)
    plain = model.head.estimate(forward(prep))["probs"]
    views = build_views(ROTATIONS)
    averaged = tta_estimate(model.head, views, prep, forward)["probs"]
    assert not torch.allclose(averaged, plain)
    by_hand = torch.stack([model.head.estimate(forward(_with_view(prep, NAMED_VIEWS[n])))["probs"].double()
                           for n in ROTATIONS]).mean(0).float()
    torch.testing.assert_close(averaged, by_hand, rtol=0, atol=1e-7)


def _with_view(prep, fn):
    return lambda images, train=False: prep.normalize(fn(images.float() / 255))


def test_named_views_are_the_rotations_and_flips():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    as_lists = {name: fn(x)[0, 0].tolist() for name, fn in NAMED_VIEWS.items()}
    assert as_lists["rot90"] == [[1.0, 3.0], [0.0, 2.0]] and as_lists["rot180"] == [[3.0, 2.0], [1.0, 0.0]]
    assert as_lists["rot270"] == [[2.0, 0.0], [3.0, 1.0]] and as_lists["hflip"] == [[1.0, 0.0], [3.0, 2.0]]
    assert as_lists["vflip"] == [[2.0, 3.0], [0.0, 1.0]] and as_lists["transpose"] == [[0.0, 2.0], [1.0, 3.0]]


def test_kornia_views_are_seeded_and_named():
    model, images, prep = _tiny("softmax"), _images(), _prep()
    forward = _forward(model, images)
    spec = ["identity", {"RandomAffine": {"degrees": 20.0, "p": 1.0}}]
    first = tta_estimate(model.head, build_views(spec), prep, forward, seed=5)["probs"]
    again = tta_estimate(model.head, build_views(spec), prep, forward, seed=5)["probs"]
    other = tta_estimate(model.head, build_views(spec), prep, forward, seed=6)["probs"]
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert tta_label(spec) == "identity+RandomAffine" and tta_label(None) == tta_label([]) == "none"


def test_unknown_view_names_the_choices():
    with pytest.raises(ConfigError, match=r"evaluation.tta\[1\]: unknown view 'rot45'.*rot90"):
        build_views(["identity", "rot45"])
    with pytest.raises(ConfigError, match="not a kornia.augmentation transform"):
        build_views([{"RandomRotate": {}}])


# ---------------------------------------------------------------- in runs, the leaderboard and predict

def _run(tmp_path, name, tta, freeze=0):
    models = [{"backbone": {"name": "tiny_cnn", "freeze": freeze}, "head": {"name": "corn", "decode": "calibrated"}}]
    (tmp_path / name).mkdir()
    experiment = small_experiment(tmp_path / name, models=models,
                                  evaluation={"bootstrap": {"n_resamples": 100, "seed": 0}, "plots": False,
                                              "tta": tta})
    out = tmp_path / name / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    return out, pd.read_csv(out / "leaderboard.csv").iloc[0]


@pytest.mark.parametrize("freeze", [0, "all"], ids=["fine-tuned", "frozen-backbone-feature-cache"])
def test_a_run_with_identity_only_tta_equals_the_run_without(tmp_path, freeze):
    (plain_dir, plain), (tta_dir, tta) = _run(tmp_path, "plain", None, freeze), _run(tmp_path, "tta", ["identity"], freeze)
    assert plain.tta == "none" and tta.tta == "identity"
    metrics = [c for c in plain.index if c.startswith(("valid_", "test_"))]
    pd.testing.assert_series_equal(plain[metrics], tta[metrics])
    run_id = plain.run_id
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(pd.read_csv(plain_dir / "runs" / run_id / f"predictions_{split}.csv"),
                                      pd.read_csv(tta_dir / "runs" / run_id / f"predictions_{split}.csv"))


def test_predict_applies_and_names_the_runs_tta(tmp_path, capsys):
    out, row = _run(tmp_path, "rot", ["identity", "rot90", "rot180", "rot270", "hflip"])
    assert row.tta == "identity+rot90+rot180+rot270+hflip"
    run_dir = out / "runs" / row.run_id
    run = load_run(run_dir, device="cpu")
    from benchkit.data.synthetic import make_synthetic_dataset
    test = make_synthetic_dataset(4, {"train": 48, "valid": 24, "test": 24}, 32, 0).splits["test"]
    images = [test.load_image(i) for i in range(len(test))]
    results = run.predict(images)
    saved = pd.read_csv(run_dir / "predictions_test.csv")
    assert [r["level"] for r in results] == saved.pred.tolist()
    assert [r["score"] for r in results] == pytest.approx(saved.score.tolist(), abs=1e-5)
    assert {r["tta"] for r in results} == {row.tta}
    untouched = load_run(run_dir, device="cpu")
    untouched.views = []
    assert [r["score"] for r in untouched.predict(images)] != pytest.approx(saved.score.tolist(), abs=1e-5)
    image = tmp_path / "one.png"
    images[0].save(image)
    capsys.readouterr()
    assert main(["predict", "--run", str(run_dir), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tta"] == row.tta
