"""The run recipe: what a run decodes and what it records."""

from __future__ import annotations

import json

from benchkit.execution import runner
from benchkit.execution.plan import plan
from conftest import small_experiment


def test_a_split_that_is_not_evaluated_is_never_decoded(tmp_path, monkeypatch):
    """With evaluation.splits [valid] the test images are never decoded; the run still scores valid."""
    decoded = []
    real = runner.decoded_split
    monkeypatch.setattr(runner, "decoded_split",
                        lambda spec, dataset, name, size: decoded.append(name) or real(spec, dataset, name, size))
    _, runs = plan(small_experiment(tmp_path, evaluation={"splits": ["valid"], "sort_by": "valid_mae",
                                                          "bootstrap": {"n_resamples": 0}, "plots": False}))
    row = runner.execute_run(runs[0], tmp_path / "out", quiet=True)
    assert row["status"] == "ok", row.get("error")
    assert sorted(decoded) == ["train", "valid"]
    assert "valid_mae" in row and not [key for key in row if key.startswith("test_")]
    run_dir = tmp_path / "out" / "runs" / runs[0].run_id
    assert json.loads((run_dir / "metrics.json").read_text())["row"]["status"] == "ok"
    assert (run_dir / "predictions_valid.csv").is_file() and not (run_dir / "predictions_test.csv").exists()


def test_the_backbone_input_size_is_built_once_per_architecture(monkeypatch):
    """Runs without data.image_size ask for the backbone's size; equal architectures build it once."""
    import benchkit.models.grader as grader
    from benchkit.config import BackboneConfig
    builds = []
    real = grader.create_backbone
    monkeypatch.setattr(grader, "create_backbone", lambda *a, **k: builds.append(a[0].name) or real(*a, **k))
    grader._architecture_input_size.memo.clear()
    sizes = [grader.backbone_input_size(BackboneConfig(name="tiny_cnn", dropout=0.1)) for _ in range(2)]
    assert sizes[0] == sizes[1] and builds == ["tiny_cnn"]
    grader.backbone_input_size(BackboneConfig(name="tiny_cnn", dropout=0.2))
    assert builds == ["tiny_cnn", "tiny_cnn"]
