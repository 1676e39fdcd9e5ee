"""Experiment-file conventions: ``base:`` files, --print-config, key=value arguments, grid overrides,
the JSON schema and --version."""

import json
import re
from pathlib import Path

import pytest
import yaml

from benchkit import __version__
from benchkit.cli import main
from benchkit.config.validation import load_experiment
from benchkit.errors import ConfigError
from benchkit.execution.plan import plan
from conftest import REPO, small_experiment

EXPERIMENTS = REPO / "experiments"


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_base_files_merge_deeply_in_order_with_the_file_last(tmp_path):
    recipe = _write(tmp_path / "recipes" / "recipe.yaml", {
        "data": {"format": "imagefolder", "root": "../images", "classes": ["a", "b"], "image_size": 48},
        "seeds": [1, 2, 3],
        "train": {"epochs": 9, "batch_size": 8, "optimizer": {"lr": 0.5, "weight_decay": 0.25}}})
    _write(tmp_path / "recipes" / "short.yaml", {"base": "recipe.yaml", "train": {"epochs": 2}})
    _write(tmp_path / "seeds.yaml", {"seeds": [7]})
    experiment = _write(tmp_path / "exp.yaml", {
        "base": ["recipes/short.yaml", "seeds.yaml"], "name": "x",
        "models": [{"backbone": "tiny_cnn", "head": "regression"}],
        "train": {"optimizer": {"lr": 0.1}}})
    config = load_experiment(experiment)
    assert config.train.epochs == 2 and config.train.batch_size == 8           # base of a base, then the base
    assert (config.train.optimizer.lr, config.train.optimizer.weight_decay) == (0.1, 0.25)  # merged key by key
    assert config.seeds == [7]                                                  # a list replaces, later base wins
    assert config.data.image_size == 48 and config.data.classes == ["a", "b"]
    assert config.data.root == Path("images")  # written relative to recipes/, rewritten relative to exp.yaml


def test_the_shipped_experiments_extend_the_shared_recipe():
    recipe = yaml.safe_load((EXPERIMENTS / "recipes" / "reference.yaml").read_text())
    extending = [p for p in EXPERIMENTS.glob("*.yaml") if yaml.safe_load(p.read_text()).get("base")]
    assert len(extending) >= 5
    for path in extending:
        config, _ = plan(path)
        assert config.data.root == Path("../data/hair-loss") and config.data.classes == recipe["data"]["classes"]
        assert config.evaluation.bootstrap.n_resamples == 10000


@pytest.mark.parametrize("case", ["cycle", "missing", "not a list"])
def test_bad_base_is_a_usage_error_naming_the_files(tmp_path, capsys, case):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    if case == "cycle":
        _write(a, {"base": "b.yaml", "name": "a"})
        _write(b, {"base": "a.yaml"})
        expected = [r"cycle", re.escape(str(a)), re.escape(str(b))]
    elif case == "missing":
        _write(a, {"base": "nowhere.yaml", "name": "a"})
        expected = [re.escape(str(a)), r"base file not found: nowhere\.yaml"]
    else:
        _write(a, {"base": {"file": "b.yaml"}, "name": "a"})
        expected = [re.escape(str(a)), r"'base' must be a file name or a list"]
    with pytest.raises(ConfigError) as err:
        load_experiment(a)
    for pattern in expected:
        assert re.search(pattern, str(err.value)), str(err.value)
    assert main(["run", str(a), "--dry-run"]) == 2
    assert "error:" in capsys.readouterr().err


def test_print_config_is_the_resolved_experiment_with_overrides(tmp_path, capsys):
    experiment = EXPERIMENTS / "maxvit_regression.yaml"
    assert main(["run", str(experiment), "--print-config", "train.epochs=3", "--set", "seeds=[1, 2]"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "base" not in printed and printed["train"]["epochs"] == 3 and printed["seeds"] == [1, 2]
    assert printed["train"]["optimizer"]["lr"] == 5e-5 and printed["data"]["root"] == "../data/hair-loss"
    expected, _ = plan(experiment, ["train.epochs=3", "seeds=[1, 2]"])
    assert load_experiment(_write(tmp_path / "printed.yaml", printed)) == expected  # it reads back the same


def test_key_value_arguments_and_grid_overrides(tmp_path, capsys):
    experiment = small_experiment(tmp_path, grid={"backbone.dropout": [0.1]})
    _, runs = plan(experiment, ["grid.backbone.dropout=[0, 0.5]", "train.epochs=3"])
    assert [r.model.backbone.dropout for r in runs] == [0.0, 0.5] and runs[0].train.epochs == 3
    assert main(["run", str(experiment), "--dry-run", "grid.backbone.dropout=[0, 0.5]"]) == 0
    assert "dropout=0.5" in capsys.readouterr().out
    assert main(["run", str(experiment), "--print-config", "train.epochs=4"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["epochs"] == 4
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(experiment), "--dry-run", "epochs"])  # not KEY=VALUE
    assert exit_.value.code == 2


def test_schema_accepts_every_shipped_file_and_rejects_a_typo(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    files = sorted(EXPERIMENTS.glob("*.yaml")) + [small_experiment(tmp_path)]
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path, errors)
    typo = yaml.safe_load(small_experiment(tmp_path).read_text())
    typo["train"]["epoch"] = 3
    assert any("epoch" in e.message for e in validator.iter_errors(typo))
    del typo["train"]["epoch"], typo["name"]
    assert list(validator.iter_errors(typo))                   # required keys, unless a base provides them
    assert not list(validator.iter_errors({**typo, "base": "recipe.yaml"}))


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"benchkit {__version__}"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "benchkit._version.__version__"}' in pyproject
