"""The import contracts of pyproject.toml (``[tool.importlinter]``, checked by ``lint-imports`` in CI) hold on
the tree the tests import, the first-party plugins (``benchkit.heads``, ``benchkit.backbones``) included, and
fail on a copy of it with a wrong-direction import planted (then pass again once the import is removed): the
contract is the test that the layering stays true. No module of ``benchkit`` is part of an import cycle."""

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
PLUGINS = ("heads", "backbones")
CONTRACTS = 4


def _installed_layout(tmp_path: Path) -> Path:
    """A copy of the package as a wheel installs it: the plugin folders inside ``benchkit/``."""
    copy = tmp_path / "benchkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for name in PLUGINS:
        if not (copy / name).is_dir():  # a source checkout keeps them beside benchkit/
            shutil.copytree(PACKAGE.parent / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _lint(search_path: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``benchkit`` package in ``search_path`` (run there: it puts its folder first)."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install import-linter; it is in the test extra)"
    env = {**os.environ, "PYTHONPATH": str(search_path)}
    return subprocess.run([command, "--config", str(CONFIG), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=search_path, timeout=300)


def test_the_contracts_hold_on_this_tree(tmp_path):
    _installed_layout(tmp_path)
    done = _lint(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{CONTRACTS} kept, 0 broken" in done.stdout


def test_no_module_of_benchkit_is_in_an_import_cycle(tmp_path):
    import graphlib

    import grimp
    _installed_layout(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("benchkit", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    modules = graph.modules
    # a package's __init__ re-exporting its children is not a cycle; a child importing its parent package is
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if not i.startswith(m + ".")}
             for m in modules}
    try:
        list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("module, planted, words", [
    ("data/datasets.py", "from benchkit.results import leaderboard",
     ["benchkit.data is not allowed to import benchkit.results", "benchkit.data.datasets -> benchkit.results"]),
    ("models/grader.py", "from benchkit.training import engine",
     ["benchkit.models is not allowed to import benchkit.training", "benchkit.models.grader -> benchkit.training"]),
    ("heads/coral.py", "from benchkit.training import engine",
     ["benchkit.heads is not allowed to import benchkit.training", "benchkit.heads.coral -> benchkit.training"]),
    ("backbones/maxvit.py", "from benchkit.heads import coral",
     ["benchkit.backbones is not allowed to import benchkit.heads", "benchkit.backbones.maxvit -> benchkit.heads"]),
    ("config/schema.py", "from benchkit.config import expansion",
     ["benchkit.config.schema is not allowed to import benchkit.config.expansion"]),
])
def test_a_planted_wrong_direction_import_breaks_the_contract(tmp_path, module, planted, words):
    copy = _installed_layout(tmp_path)
    target = copy / module
    original = target.read_text(encoding="utf-8")
    target.write_text(original + f"\n{planted}  # planted by the test\n", encoding="utf-8")
    broken = _lint(tmp_path)
    assert broken.returncode != 0 and all(w in broken.stdout for w in words), broken.stdout + broken.stderr
    target.write_text(original, encoding="utf-8")
    assert _lint(tmp_path).returncode == 0
