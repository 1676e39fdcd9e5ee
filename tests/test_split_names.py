"""One name per split strategy: ``group_kfold`` in the config, the run specs, the leaderboard and the labels;
results folders written by 0.1 (``group5fold``) read in today's name."""

import json
import warnings

import pytest
import yaml

from benchkit.config.schema import EvaluationConfig, RunSpec, strategy_of
from benchkit.execution.claims import config_changes
from benchkit.execution.plan import plan
from benchkit.results import run_folder
from benchkit.results.leaderboard import collect_rows
from conftest import small_experiment


def test_legacy_kfold_labels_read_as_group_kfold():
    assert strategy_of("group5fold") == "group_kfold"
    assert strategy_of("group10fold-3") == "group_kfold-3"
    assert strategy_of("corn backbone=x group5fold") == "corn backbone=x group_kfold"
    assert strategy_of("official") == "official" and strategy_of("group_holdout") == "group_holdout"
    assert strategy_of(None) is None


def _kfold_runs(tmp_path):
    path = small_experiment(tmp_path)
    return plan(path, overrides=["data.split=group_kfold", "data.folds=3"])[1]


def test_expanded_runs_name_the_strategy_as_the_config_does(tmp_path):
    runs = _kfold_runs(tmp_path)
    assert {r.split for r in runs} == {"group_kfold"} and sorted({r.fold for r in runs}) == [0, 1, 2]


def test_a_reference_with_the_old_split_name_warns_and_is_renamed():
    with pytest.warns(DeprecationWarning, match="group_kfold"):
        config = EvaluationConfig(reference="corn group5fold")
    assert config.reference == "corn group_kfold"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EvaluationConfig(reference="corn group_kfold").reference == "corn group_kfold"


def _old_run(tmp_path, spec: RunSpec):
    run_dir = tmp_path / "runs" / spec.run_id
    run_dir.mkdir(parents=True)
    saved = spec.model_dump(mode="json")
    saved["split"] = "group5fold"  # as 0.1 wrote it
    (run_dir / run_folder.CONFIG).write_text(yaml.safe_dump(saved))
    row = {"run_id": spec.run_id, "model": spec.model_name, "split": "group5fold", "fold": 0, "seed": 0,
           "status": "ok", "test_mae": 0.5}
    (run_dir / run_folder.METRICS).write_text(json.dumps({"row": row}))
    return run_dir


def test_a_results_folder_written_by_0_1_reads_in_todays_name(tmp_path):
    spec = _kfold_runs(tmp_path)[0]
    run_dir = _old_run(tmp_path / "out", spec)
    assert list(collect_rows(tmp_path / "out")["split"]) == ["group_kfold"]
    assert config_changes(spec, run_dir) == []  # a resumed 0.1 folder is not "made with another config"
    assert RunSpec.model_validate({**spec.model_dump(), "split": "group5fold"}).split == "group_kfold"
