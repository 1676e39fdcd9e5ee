"""The labels of a dataset folder read tolerantly, for the audit: every problem recorded, none raised.

Both layouts (``roboflow_csv``: ``<split>/_classes.csv`` rows through :mod:`benchkit.data.datasets`'
parser; ``imagefolder``: ``<split>/<class>/<image>``) give the same :class:`Labels`: the classes, one
entry per image (its label or None) and the problems found, each naming the split, the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchkit.data.datasets import IMAGE_SUFFIXES, SPLITS, one_hot_column, read_label_rows
from benchkit.errors import DataError

LAYOUTS = ("roboflow_csv", "imagefolder")


@dataclass
class Entry:
    """One image: its split, id (``<split>/<name>``), path and level (None: unlabelled)."""

    split: str
    id: str
    path: Path
    label: int | None


@dataclass
class Labels:
    """What a folder's labels gave: classes, entries, problems and the splits present."""

    classes: list[str]
    entries: list[Entry] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)


def detect_layout(root: Path) -> str:
    """``roboflow_csv`` when a split has ``_classes.csv``, else ``imagefolder``; DataError without splits."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (see data/README.md for how to get the data)")
    if any((root / s / "_classes.csv").is_file() for s in SPLITS):
        return "roboflow_csv"
    if any((root / s).is_dir() for s in SPLITS):
        return "imagefolder"
    raise DataError(f"no splits ({', '.join(SPLITS)}) under {root}")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_roboflow_labels(root: Path, classes: list[str] | None) -> Labels:
    out = Labels(classes=list(classes or []))
    for split in SPLITS:
        split_dir = root / split
        csv_path = split_dir / "_classes.csv"
        if not csv_path.is_file():
            if split_dir.is_dir():
                out.problems.append(problem(split, f"{split}/", None, "split folder has no _classes.csv"))
            continue
        out.splits.append(split)
        listed = _read_classes_rows(csv_path, split, classes is None and not out.classes, out)
        for path in sorted(p for p in split_dir.iterdir() if is_image(p) and p.name not in listed):
            out.problems.append(problem(split, f"{split}/_classes.csv", None,
                                         f"image {path.name} has no label row"))
            out.entries.append(Entry(split, f"{split}/{path.name}", path, None))
    return out


def _read_classes_rows(csv_path: Path, split: str, header_defines_classes: bool, out: Labels) -> set[str]:
    where = f"{split}/_classes.csv"
    try:
        columns, rows = read_label_rows(csv_path)
    except DataError as exc:
        out.problems.append(problem(split, where, 1, str(exc).removeprefix(f"{csv_path}: ")))
        return set()
    if header_defines_classes:
        out.classes = list(columns)
    missing = [c for c in out.classes if c not in columns]
    if missing:
        out.problems.append(problem(split, where, 1, f"header lacks class column(s) {missing}"))
    listed: set[str] = set()
    for line, name, cells in rows:
        column, reason = one_hot_column(cells, len(columns))
        label = None
        if column is not None:
            label = out.classes.index(columns[column]) if columns[column] in out.classes else None
            reason = None if label is not None else f"names unknown class {columns[column]!r}"
        if name in listed:
            reason = f"second row for {name}"
        if reason:
            out.problems.append(problem(split, where, line, reason, f"{split}/{name}"))
        if name in listed:
            continue
        listed.add(name)
        out.entries.append(Entry(split, f"{split}/{name}", csv_path.parent / name, label))
    return listed


def read_imagefolder_labels(root: Path, classes: list[str] | None) -> Labels:
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if classes is None:
        classes = sorted({d.name for s in split_dirs for d in s.iterdir() if d.is_dir()})
    out = Labels(classes=list(classes), splits=[d.name for d in split_dirs])
    for split_dir in split_dirs:
        split = split_dir.name
        for path in sorted(split_dir.iterdir()):
            if is_image(path):
                out.problems.append(problem(split, f"{split}/", None,
                                             f"image {path.name} lies outside the class folders"))
                out.entries.append(Entry(split, f"{split}/{path.name}", path, None))
            elif path.is_dir():
                label = classes.index(path.name) if path.name in classes else None
                images = sorted(p for p in path.iterdir() if is_image(p))
                for image in images:
                    rel = f"{split}/{path.name}/{image.name}"
                    if label is None:
                        out.problems.append(problem(split, f"{split}/{path.name}/", None,
                                                     f"folder {path.name!r} is not a known class", rel))
                    out.entries.append(Entry(split, rel, image, label))
    return out


def problem(split: str, where: str, line: int | None, reason: str, image_id: str | None = None) -> dict:
    return {"split": split, "where": where, "line": line, "id": image_id, "reason": reason}
