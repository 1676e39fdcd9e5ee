"""A plain (non-editable) install carries the first-party plugins under ``benchkit.``, never top-level."""

import ast
import importlib.metadata
import re
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


def _requirements() -> dict[str, list[str]]:
    """pyproject's dependencies and extras: ``{"": [...], "test": [...], ...}``."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports(folders: list[str]) -> dict[str, str]:
    """Every top-level module imported anywhere in ``folders`` (module -> first file importing it)."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def _third_party_imports(folders: list[str]) -> dict[str, str]:
    local = {p.stem for folder in folders for p in (REPO / folder).rglob("*.py")} | {"benchkit"}
    return {m: where for m, where in _imports(folders).items()
            if m not in sys.stdlib_module_names and m not in local}


@pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(), reason="needs the source tree")
@pytest.mark.parametrize("folders, extras", [(["benchkit", "backbones", "heads"], ["", "ray", "mlflow", "tensorboard"]),
                                             (["tests", "benchmarks", "docs", "scripts"], None)])
def test_every_imported_package_is_declared(folders, extras):
    """The shipped code imports only what its dependencies (or an extra naming the feature) declare."""
    requirements = _requirements()
    declared = {_distribution(r) for group, reqs in requirements.items() if extras is None or group in extras
                for r in reqs}
    providers = importlib.metadata.packages_distributions()
    undeclared = {module: where for module, where in _third_party_imports(folders).items()
                  if not declared & {d.lower().replace("_", "-") for d in providers.get(module, [module])}}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


@pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(), reason="needs the source tree")
def test_no_upper_caps_on_torch_and_no_posix_only_modules():
    """Newer torch releases must resolve, and nothing imports ``fcntl`` (absent on Windows)."""
    core = {_distribution(r): r for r in _requirements()[""]}
    for name in ("torch", "torchvision"):
        assert ">=" in core[name] and "<" not in core[name].replace(">=", ""), core[name]
    modules = _imports(["benchkit", "backbones", "heads"])
    assert "fcntl" not in modules and "msvcrt" not in modules, modules.get("fcntl") or modules.get("msvcrt")
