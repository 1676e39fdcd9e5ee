"""A finished run keeps its best weights and records, not its resume state; results folders written by the previous
version (``best.pt`` + ``last.pt``) still load, predict and export, and ``benchkit clean`` frees their resume state."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import benchkit
from benchkit.cli import main
from benchkit.config import RunSpec
from benchkit.data.prepare import prepare_dataset
from benchkit.execution import runner
from benchkit.execution.claims import claim
from benchkit.results import run_folder
from benchkit_process import assert_same_results, run_results
from conftest import small_experiment
from previous_layout import write_previous_layout

RUN = "tiny_cnn-regression__s0"
WIDE = {"backbone": {"name": "tiny_cnn", "options": {"width": 64}}, "head": "regression"}


def _experiment(tmp, ema: bool = True, **changes):
    train = {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 3e-3}, "augmentation": "none",
             "ema": {"enabled": ema, "update_after_step": 0, "update_every": 1}, "early_stopping": {"patience": 5}}
    return small_experiment(tmp, models=[changes.pop("model", WIDE)], train={**train, **changes})


def _folder_bytes(run_dir) -> int:
    return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())


@pytest.fixture(scope="module", params=[True, False], ids=["ema", "no_ema"])
def finished(request, tmp_path_factory):
    """The same run finished as by default and keeping its resume state: (tmp, experiment)."""
    tmp = tmp_path_factory.mktemp("storage")
    experiment = _experiment(tmp, ema=request.param)
    assert main(["run", str(experiment), "--out", str(tmp / "default"), "--quiet"]) == 0
    assert main(["run", str(experiment), "--out", str(tmp / "kept"), "--quiet",
                 "--set", "train.keep_resume_state=true"]) == 0
    return tmp, experiment


def test_a_finished_run_keeps_its_weights_not_its_resume_state(finished):
    tmp, _ = finished
    run_dir, kept = tmp / "default" / "runs" / RUN, tmp / "kept" / "runs" / RUN
    parameter_bytes = 4 * run_folder.read_row(run_dir)["params_total"]
    assert not (run_dir / "last.pt").exists() and (kept / "last.pt").is_file()
    assert _folder_bytes(run_dir) <= 1.1 * parameter_bytes, (_folder_bytes(run_dir), parameter_bytes)
    assert _folder_bytes(kept) > 3 * parameter_bytes  # weights, the optimizer's moments and the best copy
    assert_same_results(run_results(run_dir), run_results(kept))


def _images(tmp, count: int = 6) -> list:
    folder = tmp / "images"
    if not folder.is_dir():
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return sorted(folder.glob("*.png"))


def _numbers(out, tmp, capsys) -> dict:
    """Everything a user reads from a results folder: the rebuilt leaderboard, load_results(...).run(id).predict,
    benchkit predict --json and the exported tensors and config."""
    images = _images(tmp)
    assert main(["leaderboard", str(out)]) == 0
    board = pd.read_csv(out / "leaderboard.csv").drop(columns=["wall_seconds", "train_seconds", "peak_rss_mb"],
                                                      errors="ignore")
    api = benchkit.load_results(out).run(RUN, device="cpu").predict(images)
    capsys.readouterr()
    assert main(["predict", "--run", str(out / "runs" / RUN), *map(str, images), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    exported = tmp / f"export-{out.name}"
    assert main(["export", str(out / "runs" / RUN), "--out", str(exported)]) == 0
    config = json.loads((exported / "config.json").read_text())
    config.pop("benchkit_version")
    config["benchkit"]["run"]["train"].pop("keep_resume_state")  # not a key of the previous version
    return {"board": board, "api": api, "cli": cli, "tensors": load_file(str(exported / "model.safetensors")),
            "config": config}


def _assert_same_numbers(a: dict, b: dict) -> None:
    pd.testing.assert_frame_equal(a["board"], b["board"], check_exact=True)
    assert a["api"] == b["api"]
    assert a["cli"] == b["cli"]
    assert a["config"] == b["config"]
    assert a["tensors"].keys() == b["tensors"].keys()
    assert all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])


def test_a_previous_versions_folder_loads_predicts_exports_and_cleans_to_the_same_numbers(finished, tmp_path,
                                                                                          capsys):
    tmp, experiment = finished
    new = tmp_path / "new"
    shutil.copytree(tmp / "kept", new)
    old = tmp_path / "old"
    shutil.copytree(tmp / "kept", old)
    write_previous_layout(old / "runs" / RUN)
    assert {p.name for p in (old / "runs" / RUN).glob("*.pt")} == {"best.pt", "last.pt"}
    expected = _numbers(new, tmp_path, capsys)
    _assert_same_numbers(expected, _numbers(old, tmp_path, capsys))

    capsys.readouterr()
    assert main(["run", str(experiment), "--out", str(old), "--quiet"]) == 0  # its config lacks this version's keys
    assert f"{RUN}: finished earlier, skipped" in capsys.readouterr().err

    resume_bytes = (old / "runs" / RUN / "last.pt").stat().st_size
    before = _folder_bytes(old)
    assert main(["clean", str(old), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["freed_bytes"] == resume_bytes == before - _folder_bytes(old) and report["cleaned"] == [RUN]
    assert not (old / "runs" / RUN / "last.pt").exists() and (old / "runs" / RUN / "best.pt").is_file()
    _assert_same_numbers(expected, _numbers(old, tmp_path, capsys))
    capsys.readouterr()
    assert main(["clean", str(old), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["freed_bytes"] == 0


def test_clean_leaves_interrupted_failed_and_busy_runs_their_resume_state(finished, tmp_path, capsys):
    tmp, experiment = finished
    out = tmp_path / "out"
    source = tmp / "kept" / "runs" / RUN
    for name in ("interrupted", "failed", "busy", "done"):
        shutil.copytree(source, out / "runs" / name)
    (out / "runs" / "interrupted" / "metrics.json").unlink()
    failed = run_folder.read_row(source)
    run_folder.write_row(out / "runs" / "failed", {**failed, "status": "failed", "error": "RuntimeError: boom"})
    shutil.copy(tmp / "kept" / "experiment.yaml", out / "experiment.yaml")
    sizes = {name: (out / "runs" / name / "last.pt").stat().st_size for name in ("interrupted", "failed", "busy")}
    with claim(out / "runs" / "busy") as held:
        assert held
        assert main(["clean", str(out), "--dry-run", "--json"]) == 0
        dry = json.loads(capsys.readouterr().out)
        assert main(["clean", str(out)]) == 0
    said = capsys.readouterr().out
    assert dry["freed_bytes"] == (source / "last.pt").stat().st_size and dry["cleaned"] == ["done"]
    assert "freed" in said and "1 finished run" in said and "interrupted" in said and "busy" in said
    assert dry["unfinished"] == ["failed", "interrupted"] and dry["busy"] == ["busy"]
    assert not (out / "runs" / "done" / "last.pt").exists()
    assert {name: (out / "runs" / name / "last.pt").stat().st_size for name in sizes} == sizes


def test_clean_of_a_folder_that_is_not_a_results_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["clean", str(tmp_path)]) == 2
    assert "no runs/ folder here" in capsys.readouterr().err


def test_a_failed_run_keeps_its_resume_state_and_resumes_from_it(tmp_path, monkeypatch, capsys):
    experiment = _experiment(tmp_path)
    out = tmp_path / "out"

    def fails(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    with monkeypatch.context() as patch:
        patch.setattr(runner, "score_estimates", fails)
        assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 1
    run_dir = out / "runs" / RUN
    assert run_folder.read_row(run_dir)["status"] == "failed" and (run_dir / "last.pt").is_file()
    assert not (run_dir / "best.safetensors").exists()
    capsys.readouterr()
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    assert "resuming from epoch 2 of 2" in capsys.readouterr().err
    assert run_folder.is_finished(run_dir) and not (run_dir / "last.pt").exists()


def _split_images(run_dir, tmp) -> list:
    spec = RunSpec.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    split = prepare_dataset(spec).splits["test"]
    return [split.load_image(i) for i in range(len(split.ids))]


@pytest.mark.parametrize("dtype, freeze", [("float16", None), ("float16", "all"), ("bfloat16", None)],
                         ids=["float16", "float16-frozen_with_cached_features", "bfloat16"])
def test_half_precision_weights_are_the_ones_the_predictions_came_from(tmp_path, dtype, freeze):
    model = {**WIDE, "backbone": {**WIDE["backbone"], "freeze": freeze}}
    experiment = _experiment(tmp_path, model=model, weights_dtype=dtype)
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    run_dir = tmp_path / "out" / "runs" / RUN
    weights = load_file(str(run_dir / "best.safetensors"))
    assert weights["head.linear.weight"].dtype == getattr(torch, dtype)
    assert weights["backbone.body.1.1.running_var"].dtype == torch.float32  # buffers keep their type
    assert _folder_bytes(run_dir) <= 0.6 * 4 * run_folder.read_row(run_dir)["params_total"]
    expected = pd.read_csv(run_dir / "predictions_test.csv")
    predicted = benchkit.load_run(run_dir, device="cpu").predict(_split_images(run_dir, tmp_path))
    assert [p["score"] for p in predicted] == pytest.approx(expected.score.tolist(), abs=1e-6)
