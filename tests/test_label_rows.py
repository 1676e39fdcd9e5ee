"""Label rows are validated once, the same way for every dataset format, by ``benchkit run`` and ``data check``.

Each bad row below is a table row: ``run`` exits 2 before training with one line naming the label file and
the row (and writes nothing), ``data check`` lists exactly that problem (the same text), and no file outside
the dataset is ever opened: a row naming ``../../../outside.jpg`` or ``/etc/passwd``, or a symlink leading
out of the dataset, is refused before any image is read.
"""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import yaml
from PIL import Image

from benchkit.cli import main
from benchkit.data.labels import describe_problem
from conftest import TINY_PLUGIN

CLASSES = ["LEVEL_2", "LEVEL_3", "LEVEL_4"]


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def roboflow(root: Path) -> dict:
    """Two images per class and split, ``<split>/_classes.csv`` of one-hot rows."""
    for s, split in enumerate(("train", "valid", "test")):
        lines = ["filename, " + ", ".join(CLASSES)]
        for level in range(3):
            for i in range(2):
                _image(root / split / f"img_{level}_{i}.png", 100 * s + 10 * level + i)
                lines.append(f"img_{level}_{i}.png, " + ", ".join("1" if k == level else "0" for k in range(3)))
        (root / split / "_classes.csv").write_text("\n".join(lines) + "\n")
    return {"format": "roboflow_csv", "root": str(root), "classes": CLASSES}


def imagefolder(root: Path) -> dict:
    for s, split in enumerate(("train", "valid")):
        for level, name in enumerate(CLASSES):
            for i in range(2):
                _image(root / split / name / f"{split}{level}{i}.png", 100 * s + 10 * level + i)
    return {"format": "imagefolder", "root": str(root), "classes": CLASSES}


def table(root: Path) -> dict:
    """``labels.csv`` with path, label and split columns; images in ``img/``."""
    rows = ["path,label,split"]
    for s, split in enumerate(("train", "valid", "test")):
        for level, name in enumerate(CLASSES):
            for i in range(2):
                _image(root / "img" / f"{split}{level}{i}.png", 100 * s + 10 * level + i)
                rows.append(f"img/{split}{level}{i}.png,{name},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return {"format": "csv", "root": str(root), "classes": CLASSES}


def npz(root: Path) -> dict:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    arrays = {}
    for key, n in (("train", 6), ("val", 3), ("test", 3)):
        arrays[f"{key}_images"] = rng.integers(0, 256, (n, 12, 12), dtype=np.uint8)
        arrays[f"{key}_labels"] = (np.arange(n) % 3).reshape(-1, 1)
    np.savez(root / "grades.npz", **arrays)
    return {"format": "medmnist_npz", "root": str(root / "grades.npz"), "classes": CLASSES}


def _rewrite(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, count))


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


# ---------------------------------------------------------------- the bad rows (dataset root, tmp folder)

def row_leaving_the_data_root(root, tmp):
    _image(tmp / "outside.jpg", 999)
    _rewrite(root / "train" / "_classes.csv", "img_0_0.png", "../../../outside.jpg")


def row_naming_etc_passwd(root, tmp):
    _rewrite(root / "train" / "_classes.csv", "img_0_0.png", "../../../../../../../../etc/passwd")


def row_naming_an_absolute_path(root, tmp):
    _image(tmp / "outside.jpg", 999)
    _rewrite(root / "train" / "_classes.csv", "img_0_0.png", str(tmp / "outside.jpg"))


def row_naming_another_splits_folder(root, tmp):
    _rewrite(root / "train" / "_classes.csv", "img_0_0.png", "../valid/img_0_0.png")


def row_naming_a_symlink_out_of_the_dataset(root, tmp):
    _image(tmp / "outside.jpg", 999)
    os.symlink(tmp / "outside.jpg", root / "train" / "link.png")
    _rewrite(root / "train" / "_classes.csv", "img_0_0.png", "link.png")


def image_listed_twice_with_different_labels(root, tmp):
    _append(root / "train" / "_classes.csv", "img_0_0.png, 0, 0, 1")


def image_listed_twice_with_the_same_label(root, tmp):
    _append(root / "train" / "_classes.csv", "img_0_0.png, 1, 0, 0")


def class_folder_symlink_out_of_the_dataset(root, tmp):
    _image(tmp / "outside.jpg", 999)
    os.symlink(tmp / "outside.jpg", root / "train" / "LEVEL_3" / "link.png")


def csv_path_leaving_the_data_root(root, tmp):
    _image(tmp / "outside.png", 999)
    _rewrite(root / "labels.csv", "img/train00.png", "../outside.png")


def csv_image_listed_twice(root, tmp):
    _append(root / "labels.csv", "./img/../img/train00.png,LEVEL_2,train")


def csv_unknown_label(root, tmp):
    _rewrite(root / "labels.csv", "img/train11.png,LEVEL_3", "img/train11.png,LEVEL_33")


def csv_level_out_of_range(root, tmp):
    _rewrite(root / "labels.csv", "img/train11.png,LEVEL_3", "img/train11.png,7")


def csv_unknown_split(root, tmp):
    _rewrite(root / "labels.csv", "img/test21.png,LEVEL_4,test", "img/test21.png,LEVEL_4,tset")


def csv_missing_column(root, tmp):
    _rewrite(root / "labels.csv", "path,label,split", "path,grade,split")


def csv_empty_split(root, tmp):
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join(lines[:1] + [x for x in lines if x.endswith("train")]) + "\n")
    (root / "valid.csv").write_text(lines[0] + "\n")


def npz_level_out_of_range(root, tmp):
    path = root / "grades.npz"
    with np.load(path) as found:
        arrays = dict(found)
    arrays["val_labels"][1] = 5
    np.savez(path, **arrays)


CASES = [  # (case, dataset, data changes, words the one-line message holds)
    (row_leaving_the_data_root, roboflow, {}, ["train/_classes.csv", "line 2", "../../../outside.jpg",
                                               "resolves outside train/"]),
    (row_naming_etc_passwd, roboflow, {}, ["train/_classes.csv", "line 2", "etc/passwd", "resolves outside train/"]),
    (row_naming_an_absolute_path, roboflow, {}, ["train/_classes.csv", "line 2", "outside.jpg", "resolves outside"]),
    (row_naming_another_splits_folder, roboflow, {}, ["train/_classes.csv", "line 2", "../valid/img_0_0.png",
                                                      "resolves outside train/"]),
    (row_naming_a_symlink_out_of_the_dataset, roboflow, {}, ["train/_classes.csv", "line 2", "(link.png)",
                                                             "resolves outside train/"]),
    (image_listed_twice_with_different_labels, roboflow, {}, ["train/_classes.csv", "line 8", "img_0_0.png",
                                                              "again, with another label (LEVEL_2, here LEVEL_4)",
                                                              "(line 2)"]),
    (image_listed_twice_with_the_same_label, roboflow, {}, ["train/_classes.csv", "line 8", "img_0_0.png",
                                                            "again, with the same label (line 2)"]),
    (class_folder_symlink_out_of_the_dataset, imagefolder, {}, ["train/LEVEL_3 (link.png)",
                                                                "resolves outside train/"]),
    (csv_path_leaving_the_data_root, table, {}, ["labels.csv", "line 2", "(../outside.png)",
                                                 "resolves outside the data root"]),
    (csv_image_listed_twice, table, {}, ["labels.csv", "line 20", "./img/../img/train00.png",
                                         "lists img/train00.png again, with the same label (line 2)"]),
    (csv_unknown_label, table, {}, ["labels.csv", "line 5", "img/train11.png", "names unknown class 'LEVEL_33'"]),
    (csv_level_out_of_range, table, {}, ["labels.csv", "line 5", "img/train11.png", "level 7 is outside 0..2"]),
    (csv_unknown_split, table, {}, ["labels.csv", "line 19", "img/test21.png", "unknown split 'tset'"]),
    (csv_missing_column, table, {}, ["labels.csv", "line 1", "missing column 'label'"]),
    (csv_empty_split, table, {"options": {"files": {"train": "train.csv", "valid": "valid.csv"}}},
     ["valid.csv", "no image rows: split 'valid' would be empty"]),
    (npz_level_out_of_range, npz, {}, ["grades.npz", "(val_images[1])", "level 5 is outside 0..2"]),
]


class _Opened:
    """Every path benchkit opens as an image or reads as bytes while the case runs."""

    def __init__(self, monkeypatch):
        self.paths: list[Path] = []
        real_open, real_read = PIL.Image.open, pathlib.Path.read_bytes
        monkeypatch.setattr(PIL.Image, "open", lambda fp, *a, **k: self._seen(fp) or real_open(fp, *a, **k))
        monkeypatch.setattr(pathlib.Path, "read_bytes", lambda path: self._seen(path) or real_read(path))

    def _seen(self, item) -> None:
        if isinstance(item, (str, os.PathLike)):
            self.paths.append(Path(item).resolve())

    def outside(self, root: Path, tmp: Path) -> list[Path]:
        """What was opened of the test's own files outside the dataset ``root``, or of ``/etc``."""
        inside, tmp = Path(root).resolve(), Path(tmp).resolve()
        return [p for p in self.paths if (tmp in p.parents or Path("/etc") in p.parents) and inside not in p.parents]


def _setup(tmp_path: Path, case, dataset, changes) -> tuple[Path, dict]:
    data = {**dataset(tmp_path / "data" / "root"), **changes}
    case(tmp_path / "data" / "root", tmp_path)
    return tmp_path / "data" / "root", data


def _experiment(tmp_path: Path, data: dict) -> Path:
    raw = {"name": "rows", "plugins": [str(TINY_PLUGIN)], "data": {**data, "image_size": 16},
           "models": [{"backbone": "tiny_cnn", "head": "regression"}],
           "train": {"epochs": 1, "batch_size": 4, "augmentation": "none", "ema": {"enabled": False}},
           "evaluation": {"bootstrap": {"n_resamples": 0}, "plots": False}}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("case, dataset, changes, words", CASES, ids=[c.__name__ for c, *_ in CASES])
def test_a_bad_label_row_is_refused_by_run_and_listed_by_data_check_the_same_way(
        tmp_path, capsys, monkeypatch, case, dataset, changes, words):
    root, data = _setup(tmp_path, case, dataset, changes)
    experiment = _experiment(tmp_path, data)
    opened = _Opened(monkeypatch)

    code = main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(message) == 1, err
    for word in words:
        assert word in message[0], (word, message[0])
    assert not (tmp_path / "out").exists()

    code = main(["data", "check", str(experiment), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and len(report["label_problems"]) == 1, report["label_problems"]
    problem = report["label_problems"][0]
    assert message[0].endswith(describe_problem(problem, Path(report["dataset"]).absolute()
                                                if data["format"] != "medmnist_npz" else root.absolute()))
    assert not opened.outside(root, tmp_path), opened.outside(root, tmp_path)
    assert opened.paths or data["format"] == "medmnist_npz" or case is csv_missing_column  # the audit read images


def test_rows_refused_together_are_listed_one_a_line(tmp_path, capsys):
    root, data = _setup(tmp_path, row_leaving_the_data_root, roboflow, {})
    _append(root / "train" / "_classes.csv", "img_1_0.png, 0, 0, 1")
    code = main(["run", str(_experiment(tmp_path, data)), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "2 problem(s)" in err
    assert "line 2 (../../../outside.jpg): resolves outside train/" in err
    assert "line 8 (img_1_0.png): lists train/img_1_0.png again, with another label" in err


def test_an_image_without_a_label_row_is_noted_by_run_and_listed_by_data_check(tmp_path, capsys):
    root, data = _setup(tmp_path, lambda root, tmp: _image(root / "train" / "stray.png", 7), roboflow, {})
    experiment = _experiment(tmp_path, data)
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "1 image(s) have no label and are not used: train/stray.png" in capsys.readouterr().err
    assert main(["data", "check", str(experiment), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["label_problems"] == [] and [u["id"] for u in report["unlabelled_images"]] == ["train/stray.png"]
