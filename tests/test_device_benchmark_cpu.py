"""The GPU benchmark and profile scripts run end to end on the CPU (small sizes), so that a device call (rare and
short) never finds a crash the CPU could have shown: ``benchmarks/run.py --device cpu --quick`` and
``scripts/profile_epoch.py --device cpu``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED = ("augmentation_ms_per_image_batch32", "train_images_per_s_tf_efficientnet_lite0_b32_eager",
            "train_images_per_s_maxvit_t_b32_eager", "engine_vs_hand_step_tf_efficientnet_lite0",
            "grid_packed_vs_sequential_wall_time", "packed_vs_sequential_valid_score_mae_max_abs_diff",
            "train_images_per_s_resnet18_largest_batch_eager")


@pytest.mark.slow
def test_device_benchmark_runs_every_figure_on_the_cpu(tmp_path):
    results = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--device", "cpu", "--quick", "--results",
                           str(results)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(results.read_text())["figures"]
    failed = {f["name"]: f["note"] for f in figures if f["note"].startswith("failed")}
    assert failed == {}
    names = [f["name"] for f in figures]
    missing = [prefix for prefix in EXPECTED if not any(name.startswith(prefix) for name in names)]
    assert missing == []
    measured = [f for f in figures if f["skipped"] is None]
    assert all(f["value"] is not None and f["value"] == f["value"] for f in measured)


@pytest.mark.slow
def test_profile_script_names_the_top_operators_on_the_cpu(tmp_path):
    out = tmp_path / "profile.txt"
    done = subprocess.run([sys.executable, "scripts/profile_epoch.py", "--device", "cpu", "--backbone", "resnet18",
                           "--steps", "2", "--batch", "4", "--size", "32", "--rows", "5", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "resnet18 at 32 px, batch 4, 2 steps" in text and "aten::convolution_backward" in text
