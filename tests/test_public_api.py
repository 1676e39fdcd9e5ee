"""The public surface that plugin files and scripts rely on: ``benchkit.__all__`` is pinned, the 0.1 module
paths and head contract keep working (with a ``DeprecationWarning`` naming the new path), a plugin on the public
names runs without a warning, and any key of a head's estimate round-trips through the predictions files."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

import benchkit
from benchkit._moved import MOVED
from benchkit.cli import main
from conftest import REPO, small_experiment

PUBLIC = ["Backbone", "ConfigError", "DataError", "Head", "LoadedRun", "Prediction", "Results", "__version__",
          "load_results", "load_run", "register_backbone", "register_dataset_format", "register_head", "run"]
PLUGINS = REPO / "tests" / "plugins"


def test_the_public_names_are_pinned_and_importable():
    assert sorted(benchkit.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(benchkit, name) is not None
    from benchkit.models.head import Head
    assert benchkit.Head is Head


def test_import_benchkit_does_not_import_torch():
    code = "import sys, benchkit; assert 'torch' not in sys.modules, 'torch imported'; print(benchkit.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == benchkit.__version__, done.stderr


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_module_path_imports_the_new_module_with_a_deprecation_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .* import {new} instead"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def _experiment(tmp_path, plugin: str, backbone: str, head: str):
    return small_experiment(tmp_path, plugins=[str(PLUGINS / plugin)], models=[{"backbone": backbone, "head": head}],
                            train={"epochs": 2, "batch_size": 16, "augmentation": "none", "class_weights": "balanced",
                                   "ema": {"enabled": False}})


def _forget(plugin_stem: str) -> None:
    """Import the plugin file and the old module paths afresh (a warning is given once per import)."""
    for name in [n for n in sys.modules if n in MOVED or n.startswith(f"benchkit_plugin_{plugin_stem}_")]:
        del sys.modules[name]


def test_a_plugin_written_to_the_0_1_paths_and_contract_runs_with_deprecation_warnings(tmp_path, capsys):
    _forget("plugin_v01")
    experiment = _experiment(tmp_path, "plugin_v01.py", "v01_cnn", "v01_ordinal")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("benchkit.backbone is deprecated" in m and "benchkit.models.backbone" in m for m in messages)
    assert any("benchkit.head is deprecated" in m for m in messages)
    assert any("V01OrdinalHead: loss(outputs, targets, class_weights=...)" in m for m in messages)
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert (board.status == "ok").all() and board.test_acc.notna().all()


def test_the_0_1_loss_adapter_passes_the_class_weights_in_training_only():
    plugin = importlib.import_module("benchkit.registry")
    plugin.import_plugins([str(PLUGINS / "plugin_v01.py")])
    head = plugin.HEADS.get("v01_ordinal")(4, 3)
    outputs, targets = torch.randn(9, 3), torch.arange(9) % 3
    head.set_class_weights([1.0, 4.0, 0.5])
    expected = nn.functional.cross_entropy(outputs, targets, weight=torch.tensor([1.0, 4.0, 0.5]))
    torch.testing.assert_close(head.loss(outputs, targets), expected)
    with head.unweighted():
        torch.testing.assert_close(head.loss(outputs, targets), nn.functional.cross_entropy(outputs, targets))


def test_a_plugin_on_the_public_names_runs_without_a_warning(tmp_path):
    _forget("plugin_v02")
    experiment = _experiment(tmp_path, "plugin_v02.py", "v02_cnn", "v02_ordinal")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert not [str(w.message) for w in caught if "benchkit" in str(w.message)]
    assert (pd.read_csv(tmp_path / "out" / "leaderboard.csv").status == "ok").all()


def test_a_0_1_calibrate_method_is_refused_in_one_line_naming_what_to_implement(tmp_path, capsys):
    plugin = tmp_path / "old_calibration.py"
    plugin.write_text("from benchkit import Head, register_head\n\n\n@register_head('old_cal')\n"
                      "class OldCalibration(Head):\n    def calibrate(self, outputs, targets):\n        return None\n")
    experiment = small_experiment(tmp_path, plugins=[str(plugin)])
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "line 5" in error and "calibrate(outputs, targets)" in error and "calibrate_estimate(estimate, targets)" in error


ESTIMATE_HEAD = '''
import torch
from benchkit import Head, Prediction, register_head


@register_head("two_key_estimate", force=True)
class TwoKeyEstimate(Head):
    """Decodes from an estimate with keys no first-party head uses: ``logits`` (B, K) and ``spread`` (B,)."""

    has_probabilities = True

    def __init__(self, in_features, num_classes, dropout=0.0):
        super().__init__(in_features, num_classes, outputs=num_classes, dropout=dropout)

    def sample_losses(self, outputs, targets):
        return torch.nn.functional.cross_entropy(outputs.float(), targets, reduction="none")

    def estimate(self, outputs):
        logits = outputs.float()
        return {"logits": logits, "spread": logits.std(1)}

    def decode_estimate(self, estimate, include_unfitted=False):
        probs = torch.softmax(estimate["logits"], 1)
        score = (probs * torch.arange(probs.shape[1])).sum(1) + 0 * estimate["spread"]
        return {"default": Prediction(probs.argmax(1), score, probs)}
'''


def test_any_estimate_key_round_trips_through_predictions_tta_and_ensembles(tmp_path):
    from benchkit.evaluation.prediction_files import estimate_of
    plugin = tmp_path / "two_key_estimate.py"
    plugin.write_text(ESTIMATE_HEAD)
    experiment = small_experiment(tmp_path, plugins=[str(plugin)], seeds=[0, 1],
                                  models=[{"backbone": "tiny_cnn", "head": "two_key_estimate"}],
                                  evaluation={"bootstrap": {"n_resamples": 50, "seed": 0}, "plots": False,
                                              "tta": ["identity", "hflip"], "ensembles": ["seeds"]})
    raw = yaml.safe_load(experiment.read_text())
    raw["plugins"].append(str(REPO / "tests" / "plugins" / "tiny_backbone.py"))
    experiment.write_text(yaml.safe_dump(raw))
    results = benchkit.run(experiment, out=tmp_path / "out", quiet=True)
    board = results.leaderboard
    assert (board.status == "ok").all() and len(board) == 3, board[["run_id", "status", "error"]]
    frames = [pd.read_csv(path) for path in sorted((tmp_path / "out" / "runs").glob("*/predictions_test.csv"))]
    estimates = [estimate_of(frame) for frame in frames]
    assert all({"logits", "spread"} <= set(e) and e["logits"].shape[1] == 4 for e in estimates)
    ensemble = board[board.run_id.str.endswith("__seeds")].iloc[0]
    ensemble_frame = pd.read_csv(next((tmp_path / "out" / "ensembles").glob("*/predictions_test.csv")))
    mean_logits = (estimates[0]["logits"] + estimates[1]["logits"]) / 2
    torch.testing.assert_close(estimate_of(ensemble_frame)["logits"], mean_logits, atol=1e-6, rtol=0)
    assert ensemble_frame.pred.tolist() == mean_logits.argmax(1).tolist()
    assert ensemble["test_acc"] == pytest.approx((ensemble_frame.pred == ensemble_frame.target).mean())


def test_renamed_run_folder_constants_still_resolve_with_a_warning():
    from benchkit.results import run_folder
    with pytest.warns(DeprecationWarning, match="RESUME_STATE"):
        assert run_folder.LAST == run_folder.RESUME_STATE
    with pytest.warns(DeprecationWarning, match="BEST_WEIGHTS"):
        assert run_folder.BEST == run_folder.BEST_WEIGHTS


def test_ray_executor_at_its_old_path_warns():
    pytest.importorskip("ray")
    from benchkit.execution import executors
    from benchkit.execution.ray_executor import RayExecutor
    with pytest.warns(DeprecationWarning, match="ray_executor"):
        assert executors.RayExecutor is RayExecutor
