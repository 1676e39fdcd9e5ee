"""End to end: an experiment YAML in, run folders and a leaderboard out (tiny model, synthetic data)."""

import shutil
import sys

import pandas as pd
import pytest
import torch
from openpyxl import load_workbook
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error

from benchkit.cli import main
from benchkit.io import read_json
from benchkit.results import run_folder
from benchkit.results.leaderboard import build_leaderboard
from conftest import small_experiment
from test_workbook import assert_readable

RUN_FILES = ["config.yaml", "metrics.json", "history.csv", "predictions_valid.csv",
             "predictions_test.csv", "best.safetensors", "run.json"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    path = small_experiment(tmp, models=[
        {"backbone": "tiny_cnn", "head": {"name": "regression"}},
        {"name": "broken", "backbone": {"name": "tiny_cnn", "options": {"width": -1}}, "head": "regression"},
    ], seeds=[0, 1])
    out = tmp / "out"
    code = main(["run", str(path), "--out", str(out), "--quiet"])
    return code, out


def test_every_run_folder_has_its_files(finished):
    _, out = finished
    for run_id in ("tiny_cnn-regression__s0", "tiny_cnn-regression__s1"):
        for name in RUN_FILES:
            assert (out / "runs" / run_id / name).is_file(), (run_id, name)


def test_leaderboard_metrics_equal_sklearn_on_the_predictions(finished):
    _, out = finished
    board = pd.read_csv(out / "leaderboard.csv")
    row = board.set_index("run_id").loc["tiny_cnn-regression__s0"]
    for split in ("valid", "test"):
        pred = pd.read_csv(out / "runs" / "tiny_cnn-regression__s0" / f"predictions_{split}.csv")
        assert row[f"{split}_acc"] == pytest.approx(accuracy_score(pred.target, pred.pred))
        assert row[f"{split}_mae"] == pytest.approx(mean_absolute_error(pred.target, pred.pred))
        assert row[f"{split}_score_mae"] == pytest.approx(mean_absolute_error(pred.target, pred.score))
        assert row[f"{split}_qwk"] == pytest.approx(
            cohen_kappa_score(pred.target, pred.pred, weights="quadratic", labels=range(4)))
        assert row[f"{split}_qwk_lo"] <= row[f"{split}_qwk"] <= row[f"{split}_qwk_hi"]


def test_leaderboard_columns_and_failed_row(finished):
    code, out = finished
    board = pd.read_csv(out / "leaderboard.csv")
    for col in ["run_id", "backbone", "head", "seed", "test_acc", "test_acc_lo", "test_acc_hi", "test_mae",
                "test_qwk", "test_off1", "test_mape", "test_f1", "valid_qwk", "params_total",
                "params_trainable", "epochs", "best_epoch", "train_seconds", "status", "error"]:
        assert col in board, col
    assert len(board) == 4
    failed = board[board.status == "failed"]
    assert sorted(failed.run_id) == ["broken__s0", "broken__s1"]
    assert failed.error.str.len().min() > 0
    assert (board[board.status == "ok"].epochs == 2).all()
    assert code == 1  # some runs failed; the others still finished


def test_leaderboard_sorted_by_configured_metric_failed_last(finished):
    _, out = finished
    board = pd.read_csv(out / "leaderboard.csv")
    ok = board[board.status == "ok"].test_mae.tolist()
    assert ok == sorted(ok) and board.status.tolist()[-2:] == ["failed", "failed"]
    for metric, best_first in (("test_qwk", True), ("test_score_mae", False)):
        rebuilt = build_leaderboard(out, sort_by=metric)
        values = rebuilt[rebuilt.status == "ok"][metric].tolist()
        assert values == sorted(values, reverse=best_first) and len(set(values)) > 1, (metric, values)
        assert rebuilt.status.tolist()[-2:] == ["failed", "failed"]


def test_xlsx_has_split_sheets_config_and_highlight(finished):
    _, out = finished
    wb = load_workbook(out / "leaderboard.xlsx")
    assert wb.sheetnames == ["valid", "test", "aggregated", "config"]  # two seeds -> aggregated view
    ws = wb["test"]
    header = [c.value for c in ws[1]]
    assert "test_qwk" in header and "valid_qwk" not in header
    assert ws.cell(row=1, column=1).font.bold
    col = header.index("test_acc") + 1
    fills = [ws.cell(row=r, column=col).fill.fgColor.rgb for r in range(2, 4)]
    assert any(str(f).endswith("C6EFCE") for f in fills)
    rows = range(2, ws.max_row + 1)
    for metric, best_of in (("test_acc", max), ("test_mae", min), ("test_qwk", max), ("test_mape", min)):
        col = header.index(metric) + 1
        values = {r: ws.cell(row=r, column=col).value for r in rows}
        best = best_of(v for v in values.values() if v is not None)
        highlighted = {r for r in rows if str(ws.cell(row=r, column=col).fill.fgColor.rgb).endswith("C6EFCE")}
        assert highlighted == {r for r, v in values.items() if v == best}, (metric, values)
        assert all(ws.cell(row=r, column=col).font.bold for r in highlighted)
    assert "name: small" in "\n".join(str(c.value) for c in wb["config"]["A"])
    assert_readable(wb)  # widths, filter, formats, intervals, highlight (tests/test_workbook.py)


def test_same_seed_gives_identical_metrics(tmp_path, finished):
    _, out = finished
    path = small_experiment(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    a = pd.read_csv(out / "runs" / "tiny_cnn-regression__s0" / "history.csv")
    b = pd.read_csv(tmp_path / "again" / "runs" / "tiny_cnn-regression__s0" / "history.csv")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


def test_the_dataset_and_each_model_are_built_once_per_run(tmp_path, monkeypatch):
    """The input check's prepared dataset and model (drawn from the run's seed) are the run's own."""
    import benchkit.models.grader as grader
    from benchkit.data import prepare
    from benchkit.execution.executors import RunTask, execute_task
    from benchkit.execution.plan import plan
    builds = []
    real = grader.build_model
    monkeypatch.setattr(grader, "build_model", lambda *a, **k: builds.append(a[0].backbone.name) or real(*a, **k))
    prepare._prepared.memo.clear()
    path = small_experiment(tmp_path, seeds=[0, 1])
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert builds == ["tiny_cnn", "tiny_cnn"] and len(prepare._prepared.memo) == 1
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv").set_index("run_id")
    _, runs = plan(path)
    row = execute_task(RunTask(runs[0], tmp_path / "direct", quiet=True))  # builds its own model
    assert len(builds) == 3
    for column in ("test_mae", "test_qwk", "valid_mae", "best_epoch"):
        assert row[column] == board.loc[runs[0].run_id, column]


def test_class_weights_are_resolved_before_the_run_and_set_once_on_the_head(tmp_path):
    from benchkit.data.prepare import prepare_dataset
    from benchkit.errors import ConfigError
    from benchkit.execution.plan import plan
    from benchkit.models.grader import model_for
    from benchkit.training.build_inputs import resolve_build
    _, runs = plan(small_experiment(tmp_path, train={"class_weights": [1.0, 2.0, 3.0, 4.0]}))
    dataset = prepare_dataset(runs[0])
    spec = resolve_build(runs[0], dataset.classes, dataset.splits["train"].labels)
    assert spec.build.class_weights == [1.0, 2.0, 3.0, 4.0] and spec.build.input_size == 32
    model = model_for(spec)
    assert model.head.class_weights.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert not any("class_weights" in key for key in model.state_dict())
    labels = dataset.splits["train"].labels[:-5]  # unbalanced levels
    balanced = resolve_build(runs[0].model_copy(update={"train": runs[0].train.model_copy(
        update={"class_weights": "balanced"})}), dataset.classes, labels).build.class_weights
    counts = [int((labels == k).sum()) for k in range(4)]
    assert balanced == pytest.approx([len(labels) / (4 * c) for c in counts])
    with pytest.raises(ConfigError, match="train.class_weights has 2 values for 4 classes"):
        resolve_build(runs[0].model_copy(update={"train": runs[0].train.model_copy(
            update={"class_weights": [1.0, 2.0]})}), dataset.classes, labels)


def test_evaluation_splits_choose_what_is_evaluated(tmp_path):
    out = tmp_path / "out"
    path = small_experiment(tmp_path, evaluation={"splits": ["valid"], "sort_by": "valid_mae",
                                                  "bootstrap": {"n_resamples": 0}, "plots": False})
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    run_dir = out / "runs" / "tiny_cnn-regression__s0"
    assert (run_dir / "predictions_valid.csv").is_file() and not (run_dir / "predictions_test.csv").exists()
    board = pd.read_csv(out / "leaderboard.csv")
    assert "valid_mae" in board and not [c for c in board if c.startswith("test_")]


def test_rerun_skips_finished_runs(finished, tmp_path, capsys):
    """``benchkit run`` again on the same output folder trains none of the finished runs (the failed ones are
    tried again)."""
    _, out = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    finished_dirs = [copy / "runs" / f"tiny_cnn-regression__s{seed}" for seed in (0, 1)]
    before = {p: p.stat().st_mtime_ns for d in finished_dirs for p in d.iterdir()}
    capsys.readouterr()
    assert main(["run", str(out.parent / "experiment.yaml"), "--out", str(copy), "--quiet"]) == 1  # broken fails again
    err = capsys.readouterr().err
    for run_dir in finished_dirs:
        assert f"{run_dir.name}: finished earlier, skipped" in err
    assert {p: p.stat().st_mtime_ns for d in finished_dirs for p in d.iterdir()} == before
    assert "broken__s0" in err and "broken__s0: finished earlier" not in err
    board = pd.read_csv(copy / "leaderboard.csv")
    assert sorted(board.run_id) == sorted(pd.read_csv(out / "leaderboard.csv").run_id)


def test_best_weights_are_a_safetensors_file_and_the_facts_are_written_once(finished):
    _, out = finished
    run_dir = out / "runs" / "tiny_cnn-regression__s0"
    weights = load_file(str(run_dir / "best.safetensors"))
    assert "head.linear.weight" in weights
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    assert set(read_json(run_dir / "run.json")) == {"mean", "std", "best_epoch"}
    info = run_folder.read_info(run_dir)
    assert info["classes"] == ["LEVEL_0", "LEVEL_1", "LEVEL_2", "LEVEL_3"] and info["input_size"] == 32


def test_dry_run_lists_runs_with_counts(tmp_path, capsys):
    path = small_experiment(tmp_path, grid={"backbone.freeze": [0, "all"]})
    assert main(["run", str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "tiny_cnn-regression__freeze=0__s0" in text and "tiny_cnn-regression__freeze=all__s0" in text
    assert not (tmp_path / "results").exists()


def test_misspelled_key_exits_2_with_suggestion(tmp_path, capsys):
    path = small_experiment(tmp_path, evalution={})
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "evalution" in err and "did you mean 'evaluation'" in err and str(path) in err


def test_unknown_backbone_exits_2_in_dry_run(tmp_path, capsys):
    path = small_experiment(tmp_path, models=[{"backbone": "tiny_cn", "head": "regression"}])
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "did you mean 'tiny_cnn'" in capsys.readouterr().err


def test_a_leaderboard_that_cannot_be_built_stops_no_run_and_is_built_later(tmp_path, monkeypatch, capsys):
    """When the leaderboard cannot be built (here statsmodels cannot be imported, as on a bare GPU machine), every
    run still trains; the grid warns once, ends naming ``benchkit leaderboard``, and that builds it without training."""
    path = small_experiment(tmp_path, models=[{"backbone": "tiny_cnn", "head": {"name": "regression"}},
                                              {"backbone": "tiny_cnn", "head": {"name": "softmax"}}], seeds=[0, 1])
    out = tmp_path / "out"
    monkeypatch.setitem(sys.modules, "statsmodels.stats.multitest", None)  # `import` of it raises ImportError
    with pytest.raises(ImportError, match="statsmodels"):
        main(["run", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    trained = sorted(d.name for d in (out / "runs").iterdir() if (d / "metrics.json").is_file())
    assert len(trained) == 4
    assert err.count("could not be refreshed") == 1
    assert f"`benchkit leaderboard {out}` builds it without training" in err
    monkeypatch.undo()
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    assert main(["leaderboard", str(out)]) == 0
    assert sorted(pd.read_csv(out / "leaderboard.csv").run_id) == trained
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()} == before
