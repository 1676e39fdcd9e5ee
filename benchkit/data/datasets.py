"""Reading labelled image datasets into one in-memory description: classes and splits.

Supported layouts:

- ``roboflow_csv``: ``<root>/<split>/_classes.csv`` with header ``filename, LEVEL_2, ...`` (spaces after
  the commas are tolerated) and one one-hot row per image, images beside the CSV.
- ``imagefolder``: ``<root>/<split>/<class name>/<image>``; the class order is given by ``classes``.
- ``synthetic``: procedurally drawn images, see :mod:`benchkit.data.synthetic`.

Problems are collected and raised together (first 10 and a count), never silently dropped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from benchkit.data.rgb import is_high_bit_depth, to_rgb
from benchkit.errors import DataError, format_listing

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Split:
    """One split: image ids (paths relative to the dataset root), level indices and a loader."""

    name: str
    ids: list[str]
    labels: np.ndarray
    paths: list[Path] | None = None
    render: Callable[[int], Image.Image] | None = None
    groups: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, index: int) -> Image.Image:
        """The image as 8-bit RGB (:func:`benchkit.data.rgb.to_rgb`: other modes converted, 16-bit scaled)."""
        if self.render is not None:
            return self.render(index)
        with Image.open(self.paths[index]) as img:
            return to_rgb(img)

    def subset(self, indices: Sequence[int], name: str | None = None) -> "Split":
        """A new split made of the given rows (used by grouped splitting)."""
        idx = list(indices)
        render = _SubsetRender(self.render, idx) if self.render is not None else None
        return Split(
            name=name or self.name,
            ids=[self.ids[i] for i in idx],
            labels=self.labels[idx].copy(),
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            render=render,
            groups=[self.groups[i] for i in idx] if self.groups is not None else None,
        )


class _SubsetRender:
    """Picklable ``render`` of a subset: maps subset positions to the parent's indices."""

    def __init__(self, parent: Callable[[int], Image.Image], indices: list[int]):
        self.parent, self.indices = parent, indices

    def __call__(self, index: int) -> Image.Image:
        return self.parent(self.indices[index])


@dataclass
class Dataset:
    """Class names (in level order) and the splits that exist."""

    name: str
    classes: list[str]
    splits: dict[str, Split]
    root: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def read_roboflow_csv(root: Path, classes: Sequence[str] | None = None,
                      splits: Sequence[str] = SPLITS, check_images: bool = True) -> Dataset:
    """Read a Roboflow multi-class CSV export. ``classes`` fixes the level order (default: CSV order).

    Every problem of every split (a missing CSV, bad rows, unreadable images, a class column with no
    image) is raised together in one DataError.
    """
    root = _data_folder(root)
    found: dict[str, Split] = {}
    problems: list[str] = []
    header_classes: list[str] | None = None
    for split_name in splits:
        csv_path = root / split_name / "_classes.csv"
        if not csv_path.is_file():
            images = _image_files(root / split_name)
            if images:
                problems.append(f"{csv_path} is missing: the labels of the {len(images)} image(s) in "
                                f"{root / split_name} (export the dataset in Roboflow's multi-label CSV format)")
            continue
        try:
            split, columns, bad_rows = _read_classes_csv(csv_path, split_name, classes)
        except DataError as exc:
            problems.append(str(exc))
            continue
        problems += bad_rows
        if header_classes is None:
            header_classes = columns
        elif classes is None and columns != header_classes:
            problems.append(f"{csv_path}: class columns {columns} differ from {header_classes} "
                            f"in the other splits; give data.classes to fix the order")
            continue
        found[split_name] = split
    if not found and not problems:
        raise DataError(f"no <split>/_classes.csv under {root} (looked for {', '.join(splits)})")
    dataset = Dataset(root.name, list(classes or header_classes or []), found, root)
    if not problems:
        problems += _empty_classes(dataset, explicit=classes is not None)
    if check_images:
        problems += image_file_problems(dataset)
    if problems:
        raise DataError(f"dataset {root}: {len(problems)} problem(s):\n" + format_listing(problems))
    return dataset


def _data_folder(root: Path) -> Path:
    """``root`` as a Path; a DataError when it is missing or a file."""
    root = Path(root)
    if root.is_file():
        raise DataError(f"data.root {root} is a file; give the dataset folder (with train/, valid/, test/)")
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (see data/README.md for how to get the data)")
    return root


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _empty_classes(dataset: Dataset, explicit: bool) -> list[str]:
    """A class with no image in any split: a problem when the CSV header declared it, a note when data.classes did.

    Such a level silently changes the model (one more output) and the regression scale.
    """
    counts = np.bincount(np.concatenate([s.labels for s in dataset.splits.values()] or [np.empty(0, int)]),
                         minlength=dataset.num_classes)
    empty = [c for c, n in zip(dataset.classes, counts) if n == 0]
    if not empty:
        return []
    if explicit:
        dataset.notes.append(f"class(es) {empty} of data.classes have no image in any split; kept as levels "
                             f"(the model has {dataset.num_classes} levels)")
        return []
    return [f"class column(s) {empty} of _classes.csv have no image in any split: the model would get a level "
            f"that never occurs (and regression another scale); delete the column, or list the levels in "
            f"data.classes to keep it"]


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


def _read_classes_csv(csv_path: Path, split_name: str, classes: Sequence[str] | None):
    """``(split, class columns, bad-row problems)``; a DataError when the file or header is unusable."""
    columns, rows = read_label_rows(csv_path)
    if classes is not None:
        unknown = [c for c in columns if c not in classes]
        missing = [c for c in classes if c not in columns]
        if unknown or missing:
            raise DataError(f"{csv_path}: class columns do not match data.classes: "
                            f"unknown columns {unknown}, missing columns {missing}")
    order = list(classes) if classes is not None else columns
    ids, labels, bad = [], [], []
    for line, name, cells in rows:
        column, reason = one_hot_column(cells, len(columns))
        if reason is not None:  # a row of the wrong width may not even hold the file name where expected
            bad.append(f"line {line}{'' if len(cells) != len(columns) else f' ({name})'}: {reason}")
            continue
        ids.append(f"{split_name}/{name}")
        labels.append(order.index(columns[column]))
    root = csv_path.parent.parent
    split = Split(split_name, ids, np.asarray(labels, dtype=np.int64), [root / i for i in ids])
    return split, list(order), [f"{csv_path}: {problem}" for problem in bad]


def read_imagefolder(root: Path, classes: Sequence[str], splits: Sequence[str] = SPLITS,
                     check_images: bool = True) -> Dataset:
    """Read ``root/<split>/<class>/<image>``; ``classes`` gives the level order (required)."""
    root = _data_folder(root)
    if not classes:
        raise DataError("imagefolder data needs data.classes: the class folder names in level order")
    found: dict[str, Split] = {}
    for split_name in splits:
        split_dir = root / split_name
        if not split_dir.is_dir():
            continue
        unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes)
        if unknown:
            raise DataError(f"{split_dir}: folders {unknown} are not in data.classes {list(classes)}")
        ids, labels = [], []
        for level, cls in enumerate(classes):
            for path in sorted((split_dir / cls).glob("*")) if (split_dir / cls).is_dir() else []:
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    ids.append(path.relative_to(root).as_posix())
                    labels.append(level)
        found[split_name] = Split(split_name, ids, np.asarray(labels, dtype=np.int64),
                                  [root / i for i in ids])
    if not found:
        raise DataError(f"no split folders ({', '.join(splits)}) under {root}")
    dataset = Dataset(root.name, list(classes), found, root)
    _empty_classes(dataset, explicit=True)
    if check_images:
        check_image_files(dataset)
    return dataset


def check_image_files(dataset: Dataset) -> None:
    """Raise one DataError listing every missing, empty or undecodable image; note mode conversions."""
    problems = image_file_problems(dataset)
    if problems:
        raise DataError(f"dataset {dataset.root}: {len(problems)} problem(s) with image files:\n"
                        + format_listing(problems))


def image_file_problems(dataset: Dataset) -> list[str]:
    """Every missing, empty or undecodable image (and empty split); mode conversions become split notes."""
    problems: list[str] = []
    for split in dataset.splits.values():
        if len(split) == 0:
            problems.append(f"split {split.name!r} has no images")
        if split.paths is None:
            continue
        converted, scaled = [], 0
        for path in split.paths:
            problem, mode = _inspect_image(path)
            if problem:
                problems.append(f"{path}: {problem}")
            elif mode != "RGB":
                converted.append(f"{path.name} ({mode})")
                scaled += is_high_bit_depth(mode)
        if converted:
            shown = ", ".join(converted[:5]) + (f" and {len(converted) - 5} more" if len(converted) > 5 else "")
            split.notes.append(f"{len(converted)} image(s) in {split.name} are not RGB and are converted "
                               f"to RGB: {shown}" + (f" ({scaled} with 16-bit, 32-bit or float pixels "
                                                      f"scaled to 8 bits)" if scaled else ""))
    return problems


def _inspect_image(path: Path) -> tuple[str | None, str | None]:
    if not path.is_file():
        return "missing file", None
    if path.stat().st_size == 0:
        return "empty file", None
    try:
        with Image.open(path) as img:
            mode = img.mode
            img.load()
    except Exception as exc:  # PIL raises several types for corrupt data
        return f"cannot be decoded ({type(exc).__name__}: {exc})", None
    return None, mode
