"""Dataset formats through the one registry: a plain CSV, a MedMNIST ``.npz``, a format from a plugin file,
the schema and the refusal of an unknown format; on the real data, a CSV gives what the Roboflow export gives."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from benchkit.cli import main
from benchkit.config.files import experiment_schema
from benchkit.config.schema import DataConfig
from benchkit.data.formats.medmnist import NpzArray
from benchkit.data.prepare import load_dataset, prepare_dataset
from benchkit.data.reading import read_dataset
from benchkit.data.splits import make_splits
from benchkit.errors import ConfigError, DataError
from benchkit.execution.plan import plan
from benchkit.registry import DATASET_FORMATS
from conftest import REPO, TINY_PLUGIN

GRADES = ["none", "mild", "moderate", "severe"]
JSON_PLUGIN = REPO / "tests" / "plugins" / "json_format.py"


def _image(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _write_csv(path: Path, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _experiment(tmp_path: Path, data: dict, plugins=(), **changes) -> Path:
    raw = {"name": "formats", "plugins": [str(TINY_PLUGIN), *map(str, plugins)], "data": {"image_size": 16, **data},
           "models": [{"backbone": "tiny_cnn", "head": "regression"}],
           "train": {"epochs": 2, "batch_size": 8, "augmentation": "none", "ema": {"enabled": False},
                     "optimizer": {"lr": 3e-3}},
           "evaluation": {"bootstrap": {"n_resamples": 0}, "plots": False}, **changes}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------- csv

def test_csv_labels_by_name_or_level_with_paths_relative_to_the_csv(tmp_path):
    root = tmp_path / "knees"
    rows = [["path", "label", "split"]]
    for i in range(12):
        _image(root / "xray" / f"k{i}.png", i)
        rows.append([f"../xray/k{i}.png", GRADES[i % 4], ["train", "val", "test"][i % 3]])
    _write_csv(root / "tables" / "grades.csv", rows)
    ds = read_dataset(DataConfig(format="csv", root=root, classes=GRADES, options={"file": "tables/grades.csv"}))
    assert ds.classes == GRADES and list(ds.splits) == ["train", "valid", "test"]
    assert ds.splits["valid"].ids == ["xray/k1.png", "xray/k4.png", "xray/k7.png", "xray/k10.png"]
    assert ds.splits["valid"].labels.tolist() == [1, 0, 3, 2]
    assert ds.splits["train"].paths[1] == (root / "tables" / "../xray/k3.png").absolute()

    levels = [[r[0][3:], str(GRADES.index(r[1])), r[2]] if n else r for n, r in enumerate(rows)]
    _write_csv(root / "levels.csv", levels)  # data.root the CSV itself: its folder is the data root
    by_level = read_dataset(DataConfig(format="csv", root=root / "levels.csv"))
    assert by_level.classes == ["0", "1", "2", "3"] and any("levels 0..3" in n for n in by_level.notes)
    assert by_level.splits["valid"].labels.tolist() == [1, 0, 3, 2] and by_level.splits["valid"].ids[0] == "xray/k1.png"
    named = read_dataset(DataConfig(format="csv", root=root / "levels.csv", classes=GRADES))
    assert named.classes == GRADES and named.splits["test"].labels.tolist() == [2, 1, 0, 3]
    with pytest.raises(DataError, match=r"tables/grades.csv: line 2 \(../xray/k0.png\): resolves outside the data "):
        read_dataset(DataConfig(format="csv", root=root / "tables" / "grades.csv", classes=GRADES))


def test_csv_per_split_files_and_named_columns(tmp_path):
    for split, count in (("train", 8), ("valid", 4)):
        rows = [["file", "grade", "patient"]]
        for i in range(count):
            _image(tmp_path / split / f"{i}.png", i + 100 * len(split))
            rows.append([f"{i}.png", str(i % 2), f"{split}-p{i // 2}"])
        _write_csv(tmp_path / split / "rows.csv", rows)
    options = {"files": {"train": "train/rows.csv", "valid": "valid/rows.csv"}, "path_column": "file",
               "label_column": "grade", "subject_column": "patient"}
    ds = read_dataset(DataConfig(format="csv", root=tmp_path, options=options))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 8, "valid": 4}
    assert ds.splits["valid"].ids[1] == "valid/1.png" and ds.splits["valid"].groups[3] == "valid-p1"
    with pytest.raises(DataError, match=r"train/rows.csv: line 1: missing column 'who'"):
        read_dataset(DataConfig(format="csv", root=tmp_path, options={**options, "subject_column": "who"}))
    with pytest.raises(ConfigError, match=r"data.options \(csv\): key 'label_col'.*Extra inputs"):
        read_dataset(DataConfig(format="csv", root=tmp_path, options={"label_col": "grade"}))


def _subjects_csv(tmp_path: Path, n_subjects: int = 12, views: int = 3) -> tuple[Path, dict[str, str]]:
    """A CSV without a split column: several views per subject, file names that do not say who."""
    rng = np.random.default_rng(1)
    rows, subject_of = [["path", "label", "subject"]], {}
    names = rng.permutation(n_subjects * views)
    for s in range(n_subjects):
        for v in range(views):
            name = f"img/{names[s * views + v]:03d}.png"
            _image(tmp_path / "data" / name, s * views + v)
            rows.append([name, str(s % 3), f"patient{s}"])
            subject_of[name] = f"patient{s}"
    _write_csv(tmp_path / "data" / "labels.csv", rows)
    return tmp_path / "data", subject_of


def test_a_csv_without_splits_gives_subject_disjoint_folds_and_holdouts(tmp_path):
    root, subject_of = _subjects_csv(tmp_path)
    data = {"format": "csv", "root": str(root), "split": "group_kfold", "folds": 3}
    _, runs = plan(_experiment(tmp_path, data))
    assert len(runs) == 3
    tested = set()
    for spec in runs:
        parts = {name: {subject_of[i] for i in split.ids} for name, split in prepare_dataset(spec).splits.items()}
        assert sum(len(s) for s in prepare_dataset(spec).splits.values()) == 36
        assert not parts["train"] & parts["valid"] and not parts["train"] & parts["test"]
        assert not parts["valid"] & parts["test"]
        tested |= parts["test"]
    assert len(tested) == 12  # every subject is tested in exactly one fold
    _, (holdout,) = plan(_experiment(tmp_path, {**data, "split": "group_holdout"}))
    parts = {name: {subject_of[i] for i in split.ids} for name, split in prepare_dataset(holdout).splits.items()}
    assert len(parts) == 3 and not parts["train"] & (parts["valid"] | parts["test"])

    code = main(["run", str(_experiment(tmp_path, {**data, "split": "official"})), "--dry-run"])
    assert code == 2


def test_an_unsplit_csv_on_the_official_split_is_refused_naming_the_choice(tmp_path, capsys):
    root, _ = _subjects_csv(tmp_path)
    assert main(["run", str(_experiment(tmp_path, {"format": "csv", "root": str(root)})), "--quiet",
                 "--out", str(tmp_path / "out")]) == 2
    assert "not split into train, valid, test ({'unsplit': 36}); choose data.split" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- MedMNIST npz

def _medmnist(path: Path, size: int, rgb: bool, compressed: bool, counts=(40, 12, 16)) -> dict[str, np.ndarray]:
    """A MedMNIST-style file: five grades, images whose brightness follows the grade (learnable)."""
    rng = np.random.default_rng(size)
    arrays = {}
    for key, n in zip(("train", "val", "test"), counts):
        labels = rng.permutation(np.arange(n) % 5)
        shape = (n, size, size, 3) if rgb else (n, size, size)
        noise = rng.integers(0, 40, shape)
        arrays[f"{key}_images"] = np.clip(noise + 50 * labels.reshape((-1,) + (1,) * (len(shape) - 1)), 0,
                                          255).astype(np.uint8)
        arrays[f"{key}_labels"] = labels.reshape(-1, 1).astype(np.int64)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


@pytest.mark.parametrize("size, rgb, compressed", [(28, False, False), (64, True, True)], ids=["grey28", "rgb64"])
def test_a_medmnist_npz_trains_and_evaluates_end_to_end(tmp_path, capsys, size, rgb, compressed):
    arrays = _medmnist(tmp_path / "retina.npz", size, rgb, compressed)
    data = {"format": "medmnist_npz", "root": "retina.npz", "classes": ["0", "1", "2", "3", "4"]}
    out = tmp_path / "out"
    assert main(["run", str(_experiment(tmp_path, data)), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.status.tolist() == ["ok"] and board.test_mae.notna().all()
    run_dir = out / "runs" / board.run_id[0]
    for split, key in (("valid", "val"), ("test", "test")):
        predictions = pd.read_csv(run_dir / f"predictions_{split}.csv")
        assert predictions.image.tolist() == [f"{split}/{key}_images[{i}]" for i in range(len(arrays[f"{key}_labels"]))]
        assert predictions.target.tolist() == arrays[f"{key}_labels"].reshape(-1).tolist()

    dataset = load_dataset(DataConfig(**data), tmp_path)
    image = dataset.splits["valid"].load_image(3)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.size == (size, size)
    expected = arrays["val_images"][3]
    np.testing.assert_array_equal(pixels, expected if rgb else np.repeat(expected[..., None], 3, axis=2))
    capsys.readouterr()
    assert main(["data", "check", str(tmp_path / "retina.npz"), "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "medmnist_npz" and report["splits"]["test"]["count"] == 16
    assert report["sizes"] == {f"{size}x{size}": 68} and report["label_problems"] == []


def test_medmnist_arrays_are_memory_mapped_when_stored_and_pickle_without_their_pixels(tmp_path):
    stored = _medmnist(tmp_path / "stored.npz", 28, False, compressed=False)
    _medmnist(tmp_path / "packed.npz", 28, False, compressed=True)
    mapped = NpzArray(tmp_path / "stored.npz", "train_images")
    assert isinstance(mapped._load(), np.memmap) and mapped.header() == ((40, 28, 28), np.dtype(np.uint8))
    np.testing.assert_array_equal(mapped[7], stored["train_images"][7])
    packed = NpzArray(tmp_path / "packed.npz", "train_images")
    assert not isinstance(packed._load(), np.memmap)
    np.testing.assert_array_equal(packed[7], stored["train_images"][7])
    assert len(pickle.dumps(mapped)) < 1000
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mapped))[5], stored["train_images"][5])


def test_a_multi_label_or_mismatched_npz_is_refused(tmp_path):
    arrays = _medmnist(tmp_path / "ok.npz", 28, False, compressed=False)
    np.savez(tmp_path / "multi.npz", **{**arrays, "train_labels": np.zeros((40, 14), np.int64)})
    with pytest.raises(DataError, match=r"multi.npz: train_labels has shape \(40, 14\): one level per image"):
        read_dataset(DataConfig(format="medmnist_npz", root=tmp_path / "multi.npz"))
    np.savez(tmp_path / "short.npz", **{**arrays, "test_labels": arrays["test_labels"][:5]})
    with pytest.raises(DataError, match="test_images has 16 images but test_labels 5 labels"):
        read_dataset(DataConfig(format="medmnist_npz", root=tmp_path / "short.npz"))


# ---------------------------------------------------------------- a format from a plugin file

def _grades_json(root: Path) -> None:
    listing = {}
    for split, n in (("train", 12), ("valid", 6), ("test", 6)):
        listing[split] = []
        for i in range(n):
            _image(root / "photos" / f"{split}{i}.png", 100 * ("train", "valid", "test").index(split) + i)
            listing[split].append({"image": f"photos/{split}{i}.png", "grade": i % 3, "patient": f"{split}{i // 2}"})
    (root / "grades.json").write_text(json.dumps(listing))


def test_a_dataset_format_from_a_plugin_file_is_used_by_run_and_data_check(tmp_path, capsys):
    _grades_json(tmp_path / "ds")
    experiment = _experiment(tmp_path, {"format": "grades_json", "root": "ds", "classes": ["a", "b", "c"]},
                             plugins=[JSON_PLUGIN])
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert board.status.tolist() == ["ok"]
    predictions = pd.read_csv(tmp_path / "out" / "runs" / board.run_id[0] / "predictions_test.csv")
    assert predictions.image.tolist() == [f"photos/test{i}.png" for i in range(6)]
    assert predictions.target.tolist() == [i % 3 for i in range(6)]
    capsys.readouterr()
    assert main(["data", "check", str(experiment), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "grades_json" and report["splits"]["train"]["count"] == 12
    assert report["subject_key"]["source"] == "format" and report["subject_overlap"]["test"]["overlapping_train"] == 0
    assert "grades_json" in DATASET_FORMATS.names()
    assert main(["data", "check", str(tmp_path / "ds"), "--set", f"plugins=[{JSON_PLUGIN}]", "--set",
                 "data.classes=[a, b, c]", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "grades_json"


# ---------------------------------------------------------------- the registry's face: schema, refusal, list

def test_the_schema_names_every_registered_format_and_checks_its_options():
    schema = experiment_schema()
    assert schema["$defs"]["DataConfig"]["properties"]["format"]["enum"] == DATASET_FORMATS.names()
    base = {"name": "x", "models": [{"backbone": "tiny_cnn", "head": "regression"}]}
    jsonschema.validate({**base, "data": {"format": "csv", "root": "d", "options": {"label_column": "grade"}}},
                        schema)
    for wrong in ({"format": "csv", "root": "d", "options": {"label_col": "grade"}},
                  {"format": "medmnist_npz", "root": "d", "options": {"path_column": "p"}},
                  {"format": "parquet", "root": "d"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**base, "data": wrong}, schema)


def test_an_unknown_format_is_refused_with_the_known_ones(tmp_path, capsys):
    experiment = _experiment(tmp_path, {"format": "csvv", "root": str(tmp_path)})
    assert main(["run", str(experiment), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "data.format: unknown dataset format 'csvv'; did you mean 'csv'?" in err
    known = err.split("(known: ")[1].split(")")[0].split(", ")
    assert {"csv", "imagefolder", "medmnist_npz", "roboflow_csv", "synthetic"} <= set(known) and known == sorted(known)
    assert main(["data", "check", str(experiment)]) == 2
    assert "unknown dataset format 'csvv'" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path), "--format", "parquet"]) == 2
    assert "unknown dataset format 'parquet' (known: csv, " in capsys.readouterr().err
    assert main(["list", "formats"]) == 0
    assert "medmnist_npz" in capsys.readouterr().out


# ---------------------------------------------------------------- the real data as a plain CSV

def _hair_loss_csv(hair_loss_root: Path, path: Path) -> None:
    """hair-loss's ``_classes.csv`` files as one CSV outside the data root: path, label name, split."""
    rows = [["path", "label", "split"]]
    for split in ("train", "valid", "test"):
        with open(hair_loss_root / split / "_classes.csv", newline="") as fh:
            table = list(csv.reader(fh))
        columns = [c.strip() for c in table[0][1:]]
        for row in table[1:]:
            level = [int(c) for c in row[1:]].index(1)
            rows.append([str((hair_loss_root / split / row[0].strip()).absolute()), columns[level], split])
    _write_csv(path, rows)


@pytest.mark.realdata
def test_a_csv_of_the_real_data_gives_the_images_labels_and_splits_of_the_roboflow_export(hair_loss_root, tmp_path):
    _hair_loss_csv(hair_loss_root, tmp_path / "hair_loss.csv")
    classes = ["LEVEL_2", "LEVEL_3", "LEVEL_4", "LEVEL_5", "LEVEL_6", "LEVEL_7"]
    exported = read_dataset(DataConfig(format="roboflow_csv", root=hair_loss_root, classes=classes), check_images=False)
    listed = read_dataset(DataConfig(format="csv", root=hair_loss_root, classes=classes,
                                     options={"file": str(tmp_path / "hair_loss.csv")}), check_images=False)
    assert list(listed.splits) == list(exported.splits) == ["train", "valid", "test"]
    for name, split in exported.splits.items():
        assert listed.splits[name].ids == split.ids
        assert listed.splits[name].labels.tolist() == split.labels.tolist()
        assert [p.resolve() for p in listed.splits[name].paths] == [p.resolve() for p in split.paths]
    for (label, a), (_, b) in zip(make_splits(exported, "group_kfold", k=5), make_splits(listed, "group_kfold", k=5)):
        assert {n: s.ids for n, s in a.splits.items()} == {n: s.ids for n, s in b.splits.items()}, label


@pytest.mark.realdata
def test_a_csv_of_the_real_data_gives_the_same_leaderboard_on_a_slice(hair_loss_root, tmp_path):
    _hair_loss_csv(hair_loss_root, tmp_path / "hair_loss.csv")
    boards = []
    for name, data in (("export", {"format": "roboflow_csv"}),
                       ("table", {"format": "csv", "options": {"file": str(tmp_path / "hair_loss.csv")}})):
        folder = tmp_path / name
        folder.mkdir()
        data = {**data, "root": str(hair_loss_root), "max_per_split": 6, "cache_dir": str(tmp_path / "cache"),
                "classes": ["LEVEL_2", "LEVEL_3", "LEVEL_4", "LEVEL_5", "LEVEL_6", "LEVEL_7"]}
        experiment = _experiment(folder, data, seeds=[3])
        assert main(["run", str(experiment), "--out", str(folder / "out"), "--quiet"]) == 0
        boards.append(pd.read_csv(folder / "out" / "leaderboard.csv"))
        predictions = pd.read_csv(folder / "out" / "runs" / boards[-1].run_id[0] / "predictions_test.csv")
        boards[-1]["images"] = ",".join(predictions.image)
    metrics = [c for c in boards[0].columns if c.startswith(("valid_", "test_"))] + ["run_id", "images", "epochs"]
    pd.testing.assert_frame_equal(boards[0][metrics], boards[1][metrics])


# ---------------------------------------------------------------- the documentation's examples

def _docs_block(page: str, language: str, after: str = "") -> str:
    """The first ``language`` block of ``docs/<page>`` after the text ``after``."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    text = text[text.index(after):] if after else text
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_plugin_is_the_tested_plugin_file():
    assert _docs_block("add-dataset-format.md", "python") == JSON_PLUGIN.read_text()


def test_the_documented_retinamnist_experiment_plans_and_checks(tmp_path, capsys):
    text = _docs_block("own-data.md", "yaml", "The heads comparison on RetinaMNIST")
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    for name in ("heads_comparison.yaml", "recipes/reference.yaml"):
        (experiments / name).parent.mkdir(exist_ok=True)
        (experiments / name).write_text((REPO / "experiments" / name).read_text())
    (tmp_path / "data").mkdir()
    arrays = _medmnist(tmp_path / "data" / "retinamnist_224.npz", 28, True, compressed=False, counts=(20, 10, 10))
    path = experiments / text.splitlines()[0].removeprefix("# experiments/")
    path.write_text(text)
    config, runs = plan(path)
    assert len(runs) == 18 and {r.model.head.name for r in runs} == {"regression", "softmax", "coral", "corn",
                                                                      "clm", "soft_label"}
    assert config.data.format == "medmnist_npz" and config.evaluation.reference == "maxvit_t-regression"
    dataset = prepare_dataset(runs[0])
    assert dataset.classes == ["none", "mild", "moderate", "severe", "proliferative"]
    assert dataset.splits["test"].labels.tolist() == arrays["test_labels"].reshape(-1).tolist()
    assert main(["data", "check", str(path), "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["splits"]["valid"]["count"] == 10
