"""A plain (non-editable) install carries the first-party plugins under ``benchkit.``, never top-level."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(), reason="needs the source tree")
def test_wheel_maps_plugins_under_benchkit(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("benchkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "benchkit/backbones/maxvit.py" in names and "benchkit/heads/coral.py" in names
    top_level = {n.split("/")[0] for n in names if not n.startswith("benchkit-")}
    assert top_level == {"benchkit"}
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "benchkit = benchkit.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(), reason="needs the source tree")
def test_python_started_in_the_checkout_imports_the_checkout_plugins():
    """``python -m benchkit`` / subprocesses / Ray workers started in the repo root import benchkit from source."""
    code = "import benchkit, benchkit.heads.coral, benchkit.backbones.maxvit as m; print(benchkit.__file__); print(m.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    package, plugin = out.stdout.split()
    assert Path(package) == REPO / "benchkit" / "__init__.py"
    assert Path(plugin) == REPO / "backbones" / "maxvit.py"
    listed = subprocess.run([sys.executable, "-m", "benchkit", "list", "heads"], cwd=REPO, check=True,
                            capture_output=True, text=True)
    assert "coral" in listed.stdout
