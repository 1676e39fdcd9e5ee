"""The rehearsal of a device call on this CPU: ``scripts/device_sim`` makes what the GPU machine's image lacks
unimportable unless the bundle brings its wheel, and ``scripts/mutation_check.py`` keeps the bundle's packages on
the path (there they live on ``PYTHONPATH``) and can pick the CUDA-only mutants that ``scripts/gpu_check.sh`` runs."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import mutation_check  # noqa: E402
from mutants import MUTANTS  # noqa: E402


def _imports(module: str, wheels: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts" / "device_sim"),
           "BENCHKIT_DEVICE_SIM_WHEELS": str(wheels)}
    return subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_device_rehearsal_blocks_what_the_image_lacks_until_the_bundle_brings_it(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    blocked = _imports("scikit_posthocs", wheels)
    assert blocked.returncode == 1 and "device rehearsal" in blocked.stderr and "scikit_posthocs" in blocked.stderr
    assert _imports("statsmodels.stats.multitest", wheels).returncode == 0  # on the image
    (wheels / "scikit_posthocs-0.17.1-py3-none-any.whl").write_bytes(b"")
    assert _imports("scikit_posthocs", wheels).returncode == 0


def test_mutation_check_puts_the_copy_before_the_path_it_was_given(tmp_path, monkeypatch):
    copy, bundle = tmp_path / "copy", tmp_path / "bundle"
    (copy / "tests").mkdir(parents=True)
    bundle.mkdir()
    (bundle / "bundled_pkg.py").write_text("WHERE = 'bundle'\n")
    (copy / "bundled_pkg.py").write_text("WHERE = 'copy'\n")
    (bundle / "only_in_bundle.py").write_text("")
    (copy / "tests" / "test_path.py").write_text(
        "import bundled_pkg, only_in_bundle\n\ndef test_path():\n    assert bundled_pkg.WHERE == 'copy'\n")
    monkeypatch.setenv("PYTHONPATH", str(bundle))
    code, tail, _ = mutation_check.run_tests(copy, ["tests/test_path.py"], timeout=120)
    assert code == 0, tail


def test_cuda_only_picks_the_mutants_that_need_cuda(capsys):
    assert mutation_check.main(["--cuda-only", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [m.name for m in MUTANTS if m.needs_cuda] and listed
