"""``roboflow_csv``: a Roboflow multi-label classification CSV export.

``<root>/<split>/_classes.csv`` with the header ``filename, LEVEL_2, ...`` (spaces after the commas are
tolerated) and one one-hot row per image; the images lie beside the CSV, and a row may name no file
outside its split's folder. The header gives the classes in level order unless ``data.classes`` does.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from benchkit.data.datasets import SPLITS, Dataset, data_folder
from benchkit.data.image_files import image_files
from benchkit.data.labels import LabelTable
from benchkit.data.reading import DatasetFormat, read_folder
from benchkit.errors import DataError
from benchkit.registry import register_dataset_format

LABEL_FILE = "_classes.csv"


@register_dataset_format("roboflow_csv")
class RoboflowCsv(DatasetFormat):
    """Roboflow's multi-label CSV export: ``<split>/_classes.csv`` of one-hot rows beside the images."""

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and any((path / s / LABEL_FILE).is_file() for s in SPLITS)

    def read(self, table: LabelTable) -> None:
        root = data_folder(table.root)
        if table.classes is None:
            table.classes_from = LABEL_FILE
        header: list[str] | None = None
        for split in SPLITS:
            folder, where = root / split, f"{split}/{LABEL_FILE}"
            if not (folder / LABEL_FILE).is_file():
                images = image_files(folder)
                if images:
                    table.problem(f"{where} is missing: the labels of the {len(images)} image(s) in {folder} "
                                  f"(export the dataset in Roboflow's multi-label CSV format)", split=split)
                continue
            table.add_split(split)
            try:
                columns, rows = read_label_rows(folder / LABEL_FILE)
            except DataError as exc:
                table.problem(str(exc).removeprefix(f"{folder / LABEL_FILE}: "), where=where, line=1, split=split)
                continue
            if table.classes is None:
                table.classes = header = list(columns)
            elif header is not None and columns != header:
                table.problem(f"class columns {columns} differ from {header} in the other splits; give "
                              f"data.classes to fix the order", where=where, line=1, split=split)
            elif header is None and sorted(columns) != sorted(table.classes):
                unknown = [c for c in columns if c not in table.classes]
                missing = [c for c in table.classes if c not in columns]
                table.problem("class columns do not match data.classes: " + ", ".join(
                    f"{what} columns {names}" for what, names in (("unknown", unknown), ("missing", missing))
                    if names), where=where, line=1, split=split)
            listed = set()
            for line, name, cells in rows:
                listed.add(name)
                column, reason = one_hot_column(cells, len(columns))
                if reason is not None:  # a row of the wrong width may not even hold the file name where expected
                    table.problem(reason, where=where, line=line, split=split,
                                  name=None if len(cells) != len(columns) else name)
                    continue
                table.add_file(split, folder / name, columns[column], where=where, line=line, name=name,
                               within=folder)
            for path in images_not_in(folder, listed):
                table.add_unlabelled(split, path, f"image {path.name} has no label row in {where}")
        if not table.splits and not table.problems:
            raise DataError(f"no <split>/{LABEL_FILE} under {root} (looked for {', '.join(SPLITS)})")


def images_not_in(folder: Path, listed: set[str]) -> list[Path]:
    return [path for path in image_files(folder) if path.name not in listed]


def read_roboflow_csv(root: Path, classes: Sequence[str] | None = None, check_images: bool = True) -> Dataset:
    """Read a Roboflow multi-class CSV export. ``classes`` fixes the level order (default: CSV order).

    Every problem of every split (a missing CSV, bad rows, unreadable images, a class column with no
    image) is raised together in one DataError.
    """
    return read_folder("roboflow_csv", root, classes, check_images=check_images)


def read_label_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, str, list[str]]]]:
    """A Roboflow ``_classes.csv``: its class columns and its non-empty rows as ``(line, file name, label cells)``.

    A DataError when the file cannot be read or its header is not ``filename, <class>, ...``.
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot be read: {exc}") from None
    if not rows or not rows[0]:
        raise DataError(f"{csv_path}: empty file (expected a header 'filename, <class>, ...')")
    header = [h.strip() for h in rows[0]]
    if header[0].lower() != "filename":
        raise DataError(f"{csv_path}: first column must be 'filename', found {header[0]!r}")
    return header[1:], [(line, row[0].strip(), row[1:]) for line, row in enumerate(rows[1:], start=2)
                        if row and any(cell.strip() for cell in row)]


def one_hot_column(cells: list[str], n_columns: int) -> tuple[int | None, str | None]:
    """Which class column a row's label cells mark, or why they mark none (field count, text, not one-hot)."""
    if len(cells) != n_columns:
        return None, f"{len(cells) + 1} fields, expected {n_columns + 1}"
    try:
        values = [float(cell) for cell in cells]
    except ValueError:
        return None, f"non-numeric label cells {[cell.strip() for cell in cells]}"
    if sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
        return None, f"not one-hot {[int(v) if v.is_integer() else v for v in values]}"
    return values.index(1.0), None
