"""A dataset's label rows, and the one validation of them that ``benchkit run`` and ``data check`` share.

A dataset format fills a :class:`LabelTable` (one :class:`Entry` per image: its split, where its label came
from, the image file or array row, the label, the subject when known) and records what it could not read
as problems naming the file and row. :meth:`LabelTable.finish` then checks every format's rows the same
way, so the two commands cannot disagree about a row:

- labels become level indices: a class name of ``classes``, or an integer level ``0..K-1``;
- an image file must resolve (symlinks followed) inside the folder its row may name, ``root/<split>/``
  for a Roboflow export and the data root otherwise; a row that leaves it is refused and its file is
  never opened;
- one image listed twice is refused, whether the labels differ or not (a duplicate trains and scores
  the image twice).

``benchkit run`` refuses a dataset with any problem (:meth:`LabelTable.to_dataset`, exit 2);
``benchkit data check`` lists the same problems as ``label_problems``. Images in a dataset folder that
no row labels are not problems: ``run`` notes them, ``data check`` lists them as ``unlabelled_images``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchkit.data.datasets import Dataset, Split, image_file_problems
from benchkit.data.rgb import to_rgb
from benchkit.errors import DataError, format_listing


@dataclass
class Entry:
    """One image: split, id, the file or ``(images, index)`` array row, level (None: not used), row, subject."""

    split: str
    id: str
    path: Path | None
    label: Any
    where: str | None = None
    line: int | None = None
    name: str | None = None
    subject: str | None = None
    within: Path | None = None
    array: tuple[Any, int] | None = None


@dataclass
class LabelTable:
    """What a format read: classes, entries, problems (each naming its file and row), notes, the splits present.

    A format reads ``root``, ``classes`` (None: not given) and ``options``, sets ``classes`` when its files
    define them (a CSV header), and calls :meth:`add_file`, :meth:`add_array`, :meth:`add_unlabelled`,
    :meth:`problem` and :meth:`note`.
    """

    format: str
    root: Path | None
    classes: list[str] | None
    options: Any = None
    data: Any = None
    name: str | None = None
    classes_given: bool = False
    classes_from: str = "data.classes"
    entries: list[Entry] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    unlabelled: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.classes_given = self.classes is not None

    def add_split(self, split: str) -> None:
        """Declare a split (also one left without images)."""
        if split not in self.splits:
            self.splits.append(split)

    def add_file(self, split: str, path: Path, label: Any, *, where: str | None = None, line: int | None = None,
                 name: str | None = None, subject: str | None = None, within: Path | None = None) -> None:
        """One image file and its label (a class name or an integer level; None: listed but not used).

        ``path`` is absolute or relative to the root; it must resolve inside ``within`` (default: the root).
        """
        self.add_split(split)
        path = Path(path) if Path(path).is_absolute() or self.root is None else self.root / path
        self.entries.append(Entry(split, "", path, label, where, line, name, subject, within))

    def add_array(self, split: str, images: Any, index: int, label: Any, *, name: str, where: str | None = None,
                  line: int | None = None, subject: str | None = None) -> None:
        """One image held in memory: ``images[index]`` is an ``(H, W[, C])`` uint8 array or a PIL image."""
        self.add_split(split)
        self.entries.append(Entry(split, f"{split}/{name}", None, label, where, line, name, subject,
                                  array=(images, index)))

    def add_unlabelled(self, split: str, path: Path, reason: str) -> None:
        """An image file in the dataset that no row labels: not used; ``data check`` lists it."""
        self.add_file(split, path, None, within=Path(path).parent)
        self.unlabelled.append({"split": split, "id": None, "reason": reason, "entry": self.entries[-1]})

    def problem(self, reason: str, *, where: str | None = None, line: int | None = None, split: str | None = None,
                name: str | None = None, image_id: str | None = None) -> None:
        """A label problem: ``where`` is the label file (relative to the root), ``line`` its 1-based row."""
        self.problems.append({"split": split, "where": where, "line": line, "id": image_id, "name": name,
                              "reason": reason})

    def note(self, text: str) -> None:
        self.notes.append(text)

    # ---------------------------------------------------------------- the shared validation

    def finish(self) -> "LabelTable":
        """Check every row the same way for every format (see the module docstring); returns ``self``."""
        self._resolve_classes()
        kept: list[Entry] = []
        first: dict[Any, Entry] = {}
        for entry in self.entries:
            used = entry.label is not None
            if entry.path is not None and not self._inside(entry, report=used):
                continue
            if used:
                entry.label = self._level(entry)
                if entry.label is None:
                    continue
            key = _resolved(entry.path) if entry.path is not None else entry.id
            if key in first:
                if used:
                    self._duplicate(entry, first[key])
                continue
            first[key] = entry
            kept.append(entry)
        self.entries = kept
        known = {id(e) for e in kept}
        self.unlabelled = [{"split": u["split"], "id": u["entry"].id, "reason": u["reason"]}
                           for u in self.unlabelled if id(u["entry"]) in known]
        return self

    def _resolve_classes(self) -> None:
        if self.classes is not None:
            self.classes = list(self.classes)
            return
        labels = [e.label for e in self.entries if e.label is not None]
        levels = [_integer(label) for label in labels]
        if labels and all(level is not None and level >= 0 for level in levels):
            self.classes = [str(k) for k in range(max(levels) + 1)]
            self.classes_given = True
            self.note(f"levels 0..{len(self.classes) - 1} taken from the integer labels (give data.classes "
                      f"to name them)")
            return
        self.classes = []
        if labels:
            named = next(e for e, level in zip((e for e in self.entries if e.label is not None), levels)
                         if level is None or level < 0)
            self.problem(f"labels such as {named.label!r} are class names whose order is unknown: list the "
                         f"classes in data.classes, lowest level first", where=named.where, line=named.line,
                         split=named.split, name=named.name)
            for entry in self.entries:
                entry.label = None

    def _level(self, entry: Entry) -> int | None:
        label, classes = entry.label, self.classes
        if isinstance(label, str):
            text = label.strip()
            if text in classes:
                return classes.index(text)
            level = _integer(text)
            if level is None:
                self._row_problem(entry, f"names unknown class {text!r}")
                return None
        else:
            level = _integer(label)
        if level is None or not 0 <= level < len(classes):
            self._row_problem(entry, f"level {label} is outside 0..{len(classes) - 1} ({len(classes)} classes)")
            return None
        return level

    def _inside(self, entry: Entry, report: bool) -> bool:
        """Whether the entry's file resolves inside its folder (its id set); a row problem when not."""
        folder = (entry.within or self.root).resolve()
        resolved = _resolved(entry.path)
        if resolved != folder and folder not in resolved.parents:
            if report:
                shown = self.root.resolve() if self.root is not None else folder
                self._row_problem(entry, f"resolves outside {_relative(folder, shown)}: refused (a label row "
                                         f"may only name images inside the dataset)")
            return False
        lexical = Path(os.path.normpath(entry.path))
        root = self.root.resolve() if self.root is not None else folder
        for base, path in ((self.root, lexical), (root, resolved)):
            try:
                entry.id = path.relative_to(base).as_posix()
                break
            except ValueError:
                continue
        return True

    def _duplicate(self, entry: Entry, earlier: Entry) -> None:
        place = f"line {earlier.line}" if earlier.line else "an earlier row"
        if earlier.where != entry.where:
            place += f" of {earlier.where}"
        same = "the same label" if earlier.label == entry.label else (
            f"another label ({self._class_name(earlier.label)}, here {self._class_name(entry.label)})")
        self._row_problem(entry, f"lists {entry.id} again, with {same} ({place}): each image may be listed once")

    def _class_name(self, level) -> str:
        return self.classes[level] if isinstance(level, int) and 0 <= level < len(self.classes) else str(level)

    def _row_problem(self, entry: Entry, reason: str) -> None:
        self.problem(reason, where=entry.where, line=entry.line, split=entry.split, name=entry.name,
                     image_id=entry.id or None)

    # ---------------------------------------------------------------- for benchkit run

    def to_dataset(self, check_images: bool = True) -> Dataset:
        """The labelled images as a :class:`Dataset`; one DataError listing every problem (label rows, empty
        splits, classes without images, missing or undecodable files) when there is any."""
        splits = {name: self._split(name) for name in self.splits}
        dataset = Dataset(self.name or (self.root.name if self.root else self.format), list(self.classes),
                          splits, self.root, list(self.notes))
        problems = [f"split {name!r} has no images" for name, split in splits.items() if len(split) == 0]
        problems += [describe_problem(p, self.root) for p in self.problems]
        if not problems:
            problems += self._empty_classes(dataset)
        if check_images:
            problems += image_file_problems(dataset)
        if self.unlabelled:
            shown = ", ".join(u["id"] for u in self.unlabelled[:5])
            dataset.notes.append(f"{len(self.unlabelled)} image(s) have no label and are not used: {shown}"
                                 + (" ..." if len(self.unlabelled) > 5 else ""))
        where = self.root or dataset.name
        if len(problems) == 1:
            raise DataError(problems[0] if problems[0].startswith(str(where)) else f"dataset {where}: {problems[0]}")
        if problems:
            raise DataError(f"dataset {where}: {len(problems)} problem(s):\n" + format_listing(problems))
        return dataset

    def _split(self, name: str) -> Split:
        rows = [e for e in self.entries if e.split == name and e.label is not None]
        labels = np.asarray([e.label for e in rows], dtype=np.int64)
        groups = [e.subject for e in rows] if rows and all(e.subject is not None for e in rows) else None
        if all(e.path is not None for e in rows):
            return Split(name, [e.id for e in rows], labels, [e.path for e in rows], groups=groups)
        return Split(name, [e.id for e in rows], labels, render=RowImages([e.path or e.array for e in rows]),
                     groups=groups)

    def _empty_classes(self, dataset: Dataset) -> list[str]:
        """A class with no image in any split: a problem when the files declared it, a note when it was given.

        Such a level silently changes the model (one more output) and the regression scale.
        """
        counts = np.bincount(np.concatenate([s.labels for s in dataset.splits.values()] or [np.empty(0, int)]),
                             minlength=dataset.num_classes)
        empty = [c for c, n in zip(dataset.classes, counts) if n == 0]
        if not empty:
            return []
        if self.classes_given:
            dataset.notes.append(f"class(es) {empty} of {self.classes_from} have no image in any split; kept "
                                 f"as levels (the model has {dataset.num_classes} levels)")
            return []
        return [f"class column(s) {empty} of {self.classes_from} have no image in any split: the model would get "
                f"a level that never occurs (and regression another scale); delete the column, or list the "
                f"levels in data.classes to keep it"]


class RowImages:
    """Picklable loader of a split's images held as array rows (or files, where a split mixes both)."""

    def __init__(self, rows: list):
        self.rows = rows

    def __call__(self, index: int) -> Image.Image:
        row = self.rows[index]
        if isinstance(row, Path):
            with Image.open(row) as img:
                return to_rgb(img)
        images, position = row
        return as_rgb_image(images[position])


def as_rgb_image(item) -> Image.Image:
    """An ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` uint8 array (or a PIL image) as 8-bit RGB; grey is
    repeated over the three channels, as ImageNet backbones expect."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    array = np.asarray(item)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def describe_problem(problem: dict, root: Path | None = None) -> str:
    """One problem as one line: ``FILE: line N (NAME): reason`` (the file under ``root`` when given)."""
    where = problem.get("where")
    place = str(root / where) if where and root is not None and not Path(where).is_absolute() else where
    text = place or (str(root) if root is not None else "")
    if problem.get("line"):
        text += f": line {problem['line']}"
    if problem.get("name"):
        text += f" ({problem['name']})"
    return f"{text}: {problem['reason']}" if text else problem["reason"]


def _integer(value) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _resolved(path: Path) -> Path:
    return Path(path).resolve()


def _relative(folder: Path, root: Path) -> str:
    if folder == root:
        return "the data root"
    try:
        return f"{folder.relative_to(root).as_posix()}/"
    except ValueError:
        return str(folder)

