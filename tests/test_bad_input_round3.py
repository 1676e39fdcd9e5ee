"""Bad input, round three: each case of the third hostile try as a table row.

A user's mistake exits 2 (Python: ConfigError/DataError) with one line naming the file, key, argument or row,
before any training and before any output folder is made; what finished earlier is kept; unsafe files are
refused. Each class of mistake is fixed, not one example: every number finite and in range, every free-form
option bounded in size, every name unique, every public argument checked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import benchkit
from benchkit.cli import main
from benchkit.errors import ConfigError, DataError
from conftest import TINY_PLUGIN, small_experiment
from test_bad_inputs import base_experiment, write_roboflow_export
from test_label_rows import (image_listed_twice_with_different_labels, image_listed_twice_with_the_same_label,
                             row_leaving_the_data_root, row_naming_etc_passwd)


def _bomb(levels: int, width: int = 9) -> dict:
    """Nested aliases: ``a<k>`` holds ``width`` references to ``a<k-1>`` (the "billion laughs")."""
    text = "a0: &a0 [" + ", ".join(["x"] * width) + "]\n" + "".join(
        f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]\n" for k in range(1, levels))
    return text


# ---------------------------------------------------------------- cases of `benchkit run` (exit 2, nothing written)

def alias_bomb_under_head_options(raw, data, tmp):
    text = yaml.safe_dump(raw, sort_keys=False).replace(
        "  head: regression\n", "  head:\n    name: regression\n    opts:\n"
        + "".join(f"      {line}\n" for line in _bomb(6).splitlines()))
    return text


def alias_bomb_in_a_base_file(raw, data, tmp):
    (tmp / "recipe.yaml").write_text("train:\n  augmentation: none\nx_bomb: &b\n" + "".join(
        f"  {line}\n" for line in _bomb(6).splitlines()))
    raw["base"] = "recipe.yaml"


def value_containing_itself(raw, data, tmp):
    return yaml.safe_dump(raw, sort_keys=False).replace(
        "  head: regression\n", "  head:\n    name: regression\n    loop: &loop [1, *loop]\n")


def nested_too_deep(raw, data, tmp):
    deep = 1
    for _ in range(80):
        deep = [deep]
    raw["models"][0]["head"] = {"name": "regression", "deep": deep}


def two_ensembles_with_one_name(raw, data, tmp):
    raw["evaluation"]["ensembles"] = [{"name": "pair", "members": ["tiny_cnn-regression"]},
                                      {"name": "pair", "members": ["tiny_cnn-regression"]}]


def seeds_ensemble_twice(raw, data, tmp):
    raw["evaluation"]["ensembles"] = ["seeds", "seeds"]


def infinite_learning_rate(raw, data, tmp):
    raw["train"]["optimizer"] = {"lr": float("inf")}


def nan_in_free_form_head_options(raw, data, tmp):
    raw["models"][0]["head"] = {"name": "regression", "huber_delta": float("nan")}


def infinite_value_in_free_form_head_options(raw, data, tmp):
    raw["models"][0]["head"] = {"name": "regression", "margin": float("inf")}


def infinite_value_in_a_grid(raw, data, tmp):
    raw["grid"] = {"train.optimizer.lr": [1e-3, float("-inf")]}


def seed_beyond_64_bits(raw, data, tmp):
    raw["seeds"] = [10 ** 20]


def integer_beyond_64_bits_in_head_options(raw, data, tmp):
    raw["models"][0]["head"] = {"name": "regression", "hidden": 10 ** 22}


def as_written(raw, data, tmp):
    """The experiment as it is: the mistake is in the command line's arguments."""


def seed_beyond_32_bits(raw, data, tmp):
    raw["seeds"] = [2 ** 40]


def negative_seed(raw, data, tmp):
    raw["seeds"] = [-1]


def huge_image_size(raw, data, tmp):
    raw["data"]["image_size"] = 10 ** 8


def huge_bootstrap(raw, data, tmp):
    raw["evaluation"]["bootstrap"] = {"n_resamples": 10 ** 12}


def unknown_kornia_transform_in_tta(raw, data, tmp):
    raw["evaluation"]["tta"] = ["hflip", {"RandomFoo": {}}]


def bad_kornia_argument_in_tta(raw, data, tmp):
    raw["evaluation"]["tta"] = [{"RandomHorizontalFlip": {"bogus": 1}}]


def unknown_kornia_transform_in_training(raw, data, tmp):
    raw["train"]["augmentation"] = [{"RandomFoo": {}}]


def device_not_on_this_machine(raw, data, tmp):
    raw["train"]["device"] = "cuda:7"


def device_that_is_no_device(raw, data, tmp):
    raw["train"]["device"] = "gpu7"


def grid_beyond_max_runs(raw, data, tmp):
    raw["max_runs"] = 3
    raw["seeds"] = [0, 1, 2, 3]


def ten_thousand_run_grid(raw, data, tmp):
    raw["seeds"] = list(range(100))
    raw["grid"] = {"train.optimizer.lr": [1e-4 * (i + 1) for i in range(100)]}


def label_row_leaving_the_data_root(raw, data, tmp):
    _roboflow_png_rows(data)
    row_leaving_the_data_root(data, tmp)


def label_row_naming_etc_passwd(raw, data, tmp):
    _roboflow_png_rows(data)
    row_naming_etc_passwd(data, tmp)


def image_listed_twice_with_two_labels(raw, data, tmp):
    _roboflow_png_rows(data)
    image_listed_twice_with_different_labels(data, tmp)


def image_listed_twice_with_one_label(raw, data, tmp):
    _roboflow_png_rows(data)
    image_listed_twice_with_the_same_label(data, tmp)


def _roboflow_png_rows(data: Path) -> None:
    """The label-row cases of tests/test_label_rows.py name ``img_0_0.png``: the same images as PNG."""
    for split in ("train", "valid", "test"):
        for jpg in (data / split).glob("*.jpg"):
            Image.open(jpg).save(jpg.with_suffix(".png"))
            jpg.unlink()
        csv = data / split / "_classes.csv"
        csv.write_text(csv.read_text().replace(".jpg", ".png"))


RUN_CASES = [  # (case, extra arguments, words the one-line message must hold)
    (alias_bomb_under_head_options, ["--dry-run"], ["experiment.yaml", "models.0.head.opts.a5", "aliases"]),
    (alias_bomb_in_a_base_file, ["--dry-run"], ["recipe.yaml", "x_bomb.a5", "aliases"]),
    (value_containing_itself, ["--dry-run"], ["experiment.yaml", "models.0.head.loop", "contains itself"]),
    (nested_too_deep, ["--dry-run"], ["experiment.yaml", "models.0.head.deep", "nested more than 64 levels"]),
    (two_ensembles_with_one_name, [], ["experiment.yaml", "evaluation.ensembles", "'pair'", "unique"]),
    (seeds_ensemble_twice, [], ["experiment.yaml", "evaluation.ensembles", "'seeds'", "unique"]),
    (infinite_learning_rate, ["--dry-run"], ["experiment.yaml", "train.optimizer.lr", "not a finite number"]),
    (nan_in_free_form_head_options, ["--dry-run"], ["experiment.yaml", "models.0.head.huber_delta",
                                                    "not a finite number"]),
    (infinite_value_in_free_form_head_options, ["--dry-run"], ["experiment.yaml", "models.0.head.margin",
                                                                "not a finite number"]),
    (infinite_value_in_a_grid, ["--dry-run"], ["experiment.yaml", "grid.train.optimizer.lr.1",
                                               "not a finite number"]),
    (seed_beyond_64_bits, ["--dry-run"], ["experiment.yaml", "seeds.0", "64 bits"]),
    (seed_beyond_32_bits, ["--dry-run"], ["experiment.yaml", "seeds.0", "less than or equal to 4294967295"]),
    (integer_beyond_64_bits_in_head_options, ["--dry-run"], ["experiment.yaml", "models.0.head.hidden", "64 bits"]),
    (as_written, ["--set", "seeds=[100000000000000000000]", "--dry-run"], ["experiment.yaml", "seeds.0", "64 bits"]),
    (as_written, ["--set", "train.optimizer.lr=.inf", "--dry-run"], ["experiment.yaml", "train.optimizer.lr",
                                                                     "not a finite number"]),
    (as_written, ["--set", "train.epochs", "--dry-run"], ["--set 'train.epochs'", "expected KEY=VALUE"]),
    (as_written, ["--set", "evaluation.tta=[{RandomFoo: {}}]", "--dry-run"], ["evaluation.tta[0]", "RandomFoo"]),
    (negative_seed, ["--dry-run"], ["experiment.yaml", "seeds.0", "greater than or equal to 0"]),
    (huge_image_size, ["--dry-run"], ["experiment.yaml", "data.image_size", "less than or equal to 8192"]),
    (huge_bootstrap, ["--dry-run"], ["experiment.yaml", "evaluation.bootstrap.n_resamples", "less than or equal"]),
    (unknown_kornia_transform_in_tta, ["--dry-run"], ["experiment.yaml", "evaluation.tta[1]", "RandomFoo"]),
    (bad_kornia_argument_in_tta, ["--dry-run"], ["experiment.yaml", "evaluation.tta[0] RandomHorizontalFlip",
                                                 "bogus"]),
    (unknown_kornia_transform_in_training, ["--dry-run"], ["experiment.yaml", "train.augmentation[0]",
                                                           "RandomFoo"]),
    (device_not_on_this_machine, [], ["train.device 'cuda:7'", "tiny_cnn-regression__s0"]),
    (device_that_is_no_device, ["--dry-run"], ["experiment.yaml", "train.device 'gpu7'", "not a torch device"]),
    (grid_beyond_max_runs, [], ["4 runs", "max_runs (3)", "--yes"]),
    (ten_thousand_run_grid, [], ["10,000 runs", "max_runs (1,000)", "--yes"]),
    (label_row_leaving_the_data_root, [], ["train/_classes.csv", "line 2", "../../../outside.jpg",
                                           "resolves outside train/"]),
    (label_row_naming_etc_passwd, [], ["train/_classes.csv", "line 2", "etc/passwd", "resolves outside train/"]),
    (image_listed_twice_with_two_labels, [], ["train/_classes.csv", "img_0_0.png", "again, with another label"]),
    (image_listed_twice_with_one_label, [], ["train/_classes.csv", "img_0_0.png", "again, with the same label"]),
]


def _experiment(tmp_path: Path, case) -> Path:
    data = tmp_path / "data"
    write_roboflow_export(data)
    raw = base_experiment()
    raw["models"][0]["head"] = "regression"
    text = case(raw, data, tmp_path)
    path = tmp_path / "experiment.yaml"
    path.write_text(text if isinstance(text, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


def _case_id(case, extra) -> str:
    return case.__name__ if case is not as_written else "set_" + extra[1].split("=")[0]


@pytest.mark.parametrize("case, extra, words", RUN_CASES, ids=[_case_id(c, e) for c, e, _ in RUN_CASES])
def test_a_mistake_in_an_experiment_exits_2_naming_it_before_anything_is_written(tmp_path, capsys, case, extra,
                                                                                 words):
    if case is device_not_on_this_machine and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    experiment, out = _experiment(tmp_path, case), tmp_path / "out"
    code = main(["run", str(experiment), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err.strip().splitlines()
    assert message[0].startswith("error: ") and len(message) <= 2, err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


def test_a_grid_beyond_max_runs_starts_with_yes(tmp_path, capsys):
    experiment, out = _experiment(tmp_path, grid_beyond_max_runs), tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--set", "seeds=[0, 1]",
                 "--set", "max_runs=1", "--yes"]) == 0
    assert len(pd.read_csv(out / "leaderboard.csv")) == 2


def test_a_dry_run_of_ten_thousand_runs_lists_a_page_and_says_how_many_more(tmp_path, capsys):
    from benchkit.execution.plan import DRY_RUN_ROWS, dry_run, plan
    path = small_experiment(tmp_path, seeds=list(range(100)),
                            grid={"train.optimizer.lr": [1e-4 * (i + 1) for i in range(100)]})
    config, runs = plan(path)
    table = dry_run(runs)
    assert len(runs) == 10000 and table.row_count == DRY_RUN_ROWS + 1
    assert "10,000 run(s)" in str(table.title)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "9,900 more run(s)" in out and "more than max_runs (1,000)" in " ".join(out.split())


# ---------------------------------------------------------------- cases on a finished results folder

@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results folder with two finished runs (seeds 0 and 1) and their seeds ensemble."""
    tmp = tmp_path_factory.mktemp("finished")
    path = small_experiment(tmp, seeds=[0, 1], evaluation={"bootstrap": {"n_resamples": 0}, "plots": False,
                                                           "ensembles": ["seeds"]})
    assert main(["run", str(path), "--out", str(tmp / "out"), "--quiet", "--set", "train.epochs=1"]) == 0
    return tmp / "out"


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


def truncated_predictions_rows(out):
    path = out / "runs" / "tiny_cnn-regression__s0" / "predictions_test.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-5]) + "\n")
    return path


def predictions_cut_mid_row(out):
    path = out / "runs" / "tiny_cnn-regression__s0" / "predictions_test.csv"
    text = path.read_text()
    path.write_text(text[:text.rindex(",")])
    return path


def empty_predictions_file(out):
    path = out / "runs" / "tiny_cnn-regression__s0" / "predictions_test.csv"
    path.write_text("")
    return path


PREDICTIONS_CASES = [  # (case, words)
    (truncated_predictions_rows, ["tiny_cnn-regression__s0/predictions_test.csv", "19 rows", "24 were written"]),
    (predictions_cut_mid_row, ["tiny_cnn-regression__s0/predictions_test.csv", "row 25", "empty values"]),
    (empty_predictions_file, ["tiny_cnn-regression__s0/predictions_test.csv", "not a readable predictions file"]),
]


@pytest.mark.parametrize("case, words", PREDICTIONS_CASES, ids=[c.__name__ for c, _ in PREDICTIONS_CASES])
def test_a_cut_or_edited_predictions_file_is_refused_when_loaded(finished, tmp_path, capsys, case, words):
    out = _copy(finished, tmp_path)
    case(out)
    with pytest.raises(DataError) as caught:
        benchkit.load_results(out).predictions("test")
    assert "\n" not in str(caught.value)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))
    assert main(["leaderboard", str(out)]) == 0  # the runs' rows are kept; the ensemble averaging it is refused
    board = pd.read_csv(out / "leaderboard.csv").set_index("run_id")
    assert board.status.to_dict() == {"tiny_cnn-regression__s0": "ok", "tiny_cnn-regression__s1": "ok",
                                      "tiny_cnn-regression__seeds": "failed"}
    for word in words:
        assert word in board.error["tiny_cnn-regression__seeds"]


def leaderboard_of_a_folder_without_finished_runs(out, tmp):
    for metrics in (out / "runs").glob("*/metrics.json"):
        metrics.unlink()
    return ["leaderboard", str(out)]


def report_of_a_folder_without_finished_runs(out, tmp):
    leaderboard_of_a_folder_without_finished_runs(out, tmp)
    return ["report", str(out)]


def export_over_a_users_config_json(out, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "config.json").write_text('{"my": "settings"}')
    return ["export", str(out / "runs" / "tiny_cnn-regression__s0"), "--out", str(tmp / "mine")]


def export_into_a_folder_of_other_files(out, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("mine")
    return ["export", str(out / "runs" / "tiny_cnn-regression__s0"), "--out", str(tmp / "mine")]


FOLDER_CASES = [  # (case, words)
    (leaderboard_of_a_folder_without_finished_runs, ["out: no run has finished yet", "runs/*/metrics.json"]),
    (report_of_a_folder_without_finished_runs, ["out: no run has finished yet", "runs/*/metrics.json"]),
    (export_over_a_users_config_json, ["--out", "mine", "its own config.json", "--force"]),
    (export_into_a_folder_of_other_files, ["--out", "mine", "other files", "--force"]),
]


@pytest.mark.parametrize("case, words", FOLDER_CASES, ids=[c.__name__ for c, _ in FOLDER_CASES])
def test_a_mistake_on_a_results_folder_exits_2_naming_it(finished, tmp_path, capsys, case, words):
    out = _copy(finished, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts}
    code = main(case(out, tmp_path))
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    for path, content in before.items():  # the user's files are untouched (mine/config.json, the leaderboard)
        if path.exists() and path.parent.name == "mine":
            assert path.read_bytes() == content


def test_the_predictions_of_a_finished_run_read_back_unchanged(finished):
    frame = benchkit.load_results(finished).predictions("test")
    assert len(frame) == 2 * 24 + 24 and not frame[["image", "target", "pred", "score"]].isna().any().any()


def test_export_replaces_an_earlier_export_and_with_force_a_folder_of_other_files(finished, tmp_path, capsys):
    run_dir = finished / "runs" / "tiny_cnn-regression__s0"
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "mine"), "--force"]) == 0
    assert benchkit.load_run(tmp_path / "mine").spec.run_id == "tiny_cnn-regression__s0"


# ---------------------------------------------------------------- the Python API: one clear error, not a TypeError

def _bomb_mapping(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    leaf = ["x"] * 9
    for _ in range(6):
        leaf = [leaf] * 9
    raw["models"][0]["head"] = {"name": "regression", "opts": leaf}
    return raw


def _recursive_mapping(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    loop: list = [1]
    loop.append(loop)
    raw["models"][0]["head"] = {"name": "regression", "loop": loop}
    return raw


API_CASES = [  # (call(experiment path, finished folder, tmp), exception, words)
    (lambda e, f, t: benchkit.run(None), ConfigError, ["experiment:", "NoneType"]),
    (lambda e, f, t: benchkit.run(123), ConfigError, ["experiment:", "int 123"]),
    (lambda e, f, t: benchkit.run(e, out=123), ConfigError, ["out:", "int 123"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", jobs=0), ConfigError, ["jobs:", "0"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", jobs="2"), ConfigError, ["jobs:", "'2'"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", executor=5), ConfigError, ["executor:", "5"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", fresh="yes"), ConfigError, ["fresh:", "'yes'"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", overrides=[1]), ConfigError, ["overrides:", "[1]"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", overrides="seeds=[0, 1]\n"), ConfigError,
     ["2 runs", "max_runs (1)", "yes=True"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", overrides="train.epochs"), ConfigError,
     ["'train.epochs'", "expected KEY=VALUE"]),
    (lambda e, f, t: benchkit.run(e, out=t / "o", overrides="train.optimizer.lr=.inf"), ConfigError,
     ["train.optimizer.lr", "not a finite number"]),
    (lambda e, f, t: benchkit.run({**yaml.safe_load(e.read_text()), "seeds": [10 ** 20]}, out=t / "o"), ConfigError,
     ["<experiment>", "seeds.0", "64 bits"]),
    pytest.param(lambda e, f, t: benchkit.run(e, out=t / "o", overrides=["train.device=cuda:7"]), ConfigError,
                 ["train.device 'cuda:7'", "tiny_cnn-regression__s0"],
                 marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")),
    (lambda e, f, t: benchkit.run(_bomb_mapping(e), out=t / "o"), ConfigError,
     ["<experiment>", "models.0.head.opts", "aliases"]),
    (lambda e, f, t: benchkit.run(_recursive_mapping(e), out=t / "o"), ConfigError,
     ["<experiment>", "models.0.head.loop", "contains itself"]),
    (lambda e, f, t: benchkit.load_results(5), ConfigError, ["out_dir:", "int 5"]),
    (lambda e, f, t: benchkit.Results(None), ConfigError, ["out_dir:", "NoneType"]),
    (lambda e, f, t: benchkit.load_results(f).predictions(5), ConfigError, ["split:", "5"]),
    (lambda e, f, t: benchkit.load_results(f).run(5), ConfigError, ["run_id:", "5"]),
    (lambda e, f, t: benchkit.load_run(None), ConfigError, ["run_dir:", "NoneType"]),
    (lambda e, f, t: benchkit.load_run(f / "runs" / "tiny_cnn-regression__s0", device=3), ConfigError,
     ["device:", "3"]),
    (lambda e, f, t: benchkit.load_run(f / "runs" / "tiny_cnn-regression__s0").predict(None), DataError,
     ["images:", "NoneType"]),
    (lambda e, f, t: benchkit.load_run(f / "runs" / "tiny_cnn-regression__s0").predict(7), DataError,
     ["images:", "int"]),
    (lambda e, f, t: benchkit.load_run(f / "runs" / "tiny_cnn-regression__s0").predict_files([None]),
     ConfigError, ["paths[]", "NoneType"]),
    (lambda e, f, t: benchkit.load_run(f / "runs" / "tiny_cnn-regression__s0").predict(t / "nothing"), DataError,
     ["nothing", "no image files"]),
]


@pytest.mark.parametrize("call, error, words", API_CASES, ids=[f"api{i}" for i in range(len(API_CASES))])
def test_a_wrong_argument_in_python_is_one_clear_error(finished, tmp_path, call, error, words):
    experiment = small_experiment(tmp_path, max_runs=1)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(error) as caught:
        call(experiment, finished, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    assert not (tmp_path / "o").exists()


def test_overrides_given_as_one_string_are_one_override(tmp_path):
    from benchkit.execution.plan import plan
    config, runs = plan(small_experiment(tmp_path), "train.epochs=3")
    assert config.train.epochs == 3 and runs[0].train.epochs == 3


def test_predict_takes_a_folder_in_python_as_the_command_line_does(finished, tmp_path):
    (tmp_path / "photos" / "more").mkdir(parents=True)
    for name in ("photos/a.png", "photos/more/b.jpg"):
        Image.fromarray(np.full((40, 30, 3), 90, np.uint8)).save(tmp_path / name)
    run = benchkit.load_run(finished / "runs" / "tiny_cnn-regression__s0")
    results = run.predict(tmp_path / "photos")
    assert [Path(r["image"]).name for r in results] == ["a.png", "b.jpg"]
    assert run.predict([tmp_path / "photos" / "a.png"])[0]["score"] == results[0]["score"]


# ---------------------------------------------------------------- EXIF orientation, in training and in predict

def _phone_photo(path: Path) -> np.ndarray:
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view); returns the
    upright pixels a viewer shows."""
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:, :24] = 255  # left half white as stored; upright, the top half is white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return np.rot90(stored, k=-1)


def test_exif_orientation_is_applied_by_training_the_cache_and_predict(tmp_path, finished):
    from benchkit.data.datasets import Split
    from benchkit.data.decode import decode_image
    from benchkit.data.image_cache import decode_bytes
    upright = _phone_photo(tmp_path / "phone.jpg")
    assert upright.shape == (48, 32, 3)
    split = Split(name="train", ids=["phone.jpg"], labels=np.array([0]), paths=[tmp_path / "phone.jpg"])
    loaded = np.asarray(split.load_image(0))
    assert loaded.shape == upright.shape and np.abs(loaded.astype(int) - upright).mean() < 8
    cached = decode_bytes((tmp_path / "phone.jpg").read_bytes(), 16)
    assert cached[:, :8].mean() > 200 and cached[:, 8:].mean() < 50  # upright: the white half on top
    run = benchkit.load_run(finished / "runs" / "tiny_cnn-regression__s0")
    as_file = run.preprocess(tmp_path / "phone.jpg")[0].numpy().astype(int)
    expected = decode_image(Image.fromarray(np.ascontiguousarray(upright)), run.input_size).astype(int)
    assert np.abs(as_file - expected).mean() < 8
    half = run.input_size // 2
    assert as_file[:, :half].mean() > 200 and as_file[:, half:].mean() < 50
