"""The import contracts of pyproject.toml (``[tool.importlinter]``, checked by ``lint-imports`` in CI) hold on
the tree the tests import, and fail on a copy of it with a wrong-direction import planted (then pass again
once the import is removed): the contract is the test that the layering stays true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchkit
from conftest import REPO

pytest.importorskip("importlinter")
PACKAGE = Path(benchkit.__file__).resolve().parent
CONFIG = REPO / "pyproject.toml"


def _lint(search_path: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``benchkit`` package in ``search_path`` (run there: it puts its folder first)."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install import-linter; it is in the test extra)"
    env = {**os.environ, "PYTHONPATH": str(search_path)}
    return subprocess.run([command, "--config", str(CONFIG), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=search_path, timeout=300)


def test_the_contracts_hold_on_this_tree():
    done = _lint(PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, planted, words", [
    ("data/datasets.py", "from benchkit.results import leaderboard",
     ["benchkit.data is not allowed to import benchkit.results", "benchkit.data.datasets -> benchkit.results"]),
    ("models/grader.py", "from benchkit.training import engine",
     ["benchkit.models is not allowed to import benchkit.training", "benchkit.models.grader -> benchkit.training"]),
])
def test_a_planted_wrong_direction_import_breaks_the_contract(tmp_path, module, planted, words):
    copy = tmp_path / "benchkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    original = target.read_text(encoding="utf-8")
    target.write_text(original + f"\n{planted}  # planted by the test\n", encoding="utf-8")
    broken = _lint(tmp_path)
    assert broken.returncode != 0 and all(w in broken.stdout for w in words), broken.stdout + broken.stderr
    target.write_text(original, encoding="utf-8")
    assert _lint(tmp_path).returncode == 0
