"""A labelled image dataset in memory: class names in level order and its splits, and the checks of its files.

Datasets are read by their format (:mod:`benchkit.data.reading`, the formats in :mod:`benchkit.data.formats`);
every problem is collected and raised together (first 10 and a count), never silently dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from benchkit.data.image_files import IMAGE_SUFFIXES  # noqa: F401  (the one list; imported from here before)
from benchkit.data.rgb import is_high_bit_depth, to_rgb
from benchkit.errors import DataError

SPLITS = ("train", "valid", "test")


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


def image_file_problems(dataset: Dataset) -> list[str]:
    """Every missing, empty or undecodable image; mode conversions become split notes."""
    problems: list[str] = []
    for split in dataset.splits.values():
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


def data_folder(root: Path) -> Path:
    """``root`` as a Path; a DataError when it is missing or a file."""
    root = Path(root)
    if root.is_file():
        raise DataError(f"data.root {root} is a file; give the dataset folder (with train/, valid/, test/)")
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (see data/README.md for how to get the data)")
    return root


_MOVED = {"read_roboflow_csv": "benchkit.data.formats.roboflow", "read_imagefolder": "benchkit.data.formats.imagefolder"}


def __getattr__(name: str):
    """The readers that moved to their formats, still importable from here with a DeprecationWarning."""
    if name in _MOVED:
        import importlib
        warnings.warn(f"benchkit.data.datasets.{name} is deprecated; import it from {_MOVED[name]}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
