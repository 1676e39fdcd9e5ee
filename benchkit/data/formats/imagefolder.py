"""``imagefolder``: ``<root>/<split>/<class name>/<image>``, the class order from ``data.classes``.

Training needs ``data.classes`` (folder names sort alphabetically, not by level); ``data check`` without
them takes the folder names in sorted order. A class folder that is not one of the classes is a problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from benchkit.data.datasets import SPLITS, Dataset, data_folder
from benchkit.data.image_files import image_files, is_image_file
from benchkit.data.labels import LabelTable
from benchkit.data.reading import DatasetFormat, read_folder
from benchkit.errors import DataError
from benchkit.registry import register_dataset_format


@register_dataset_format("imagefolder")
class ImageFolder(DatasetFormat):
    """One folder per class inside each split folder; the folder names are the class names."""

    needs_classes = True

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path.is_dir() and any((path / s).is_dir() for s in SPLITS)
                and not any((path / s / "_classes.csv").is_file() for s in SPLITS))

    def read(self, table: LabelTable) -> None:
        root = data_folder(table.root)
        split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
        if not split_dirs:
            raise DataError(f"no split folders ({', '.join(SPLITS)}) under {root}")
        if table.classes is None:
            table.classes = sorted({d.name for s in split_dirs for d in s.iterdir() if d.is_dir()})
            table.classes_from = "the class folders"
            table.note(f"classes from the folder names in sorted order: {table.classes} (give the level order "
                       f"with data.classes)")
        for split_dir in split_dirs:
            split = split_dir.name
            table.add_split(split)
            for path in sorted(split_dir.iterdir()):
                if is_image_file(path):
                    table.add_unlabelled(split, path, f"image {path.name} lies outside the class folders")
                elif path.is_dir():
                    self._class_folder(table, split, path)

    @staticmethod
    def _class_folder(table: LabelTable, split: str, folder: Path) -> None:
        known = folder.name in table.classes
        where = f"{split}/{folder.name}/"
        if not known:
            table.problem(f"folder {folder.name!r} is not a known class", where=where, split=split)
        for image in image_files(folder):
            table.add_file(split, image, folder.name if known else None, where=where if known else None,
                           name=image.name if known else None, within=table.root / split)


def read_imagefolder(root: Path, classes: Sequence[str], check_images: bool = True) -> Dataset:
    """Read ``root/<split>/<class>/<image>``; ``classes`` gives the level order (required)."""
    if not classes:
        raise DataError("imagefolder data needs data.classes: the class folder names in level order")
    return read_folder("imagefolder", root, classes, check_images=check_images)
