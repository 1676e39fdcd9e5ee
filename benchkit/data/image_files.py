"""Which files are images: one list of file name endings for training, the audit and predict.

An image is any file whose ending PIL can open (``.jpg``, ``.png``, ``.tif``, ``.webp``, ``.bmp``, ...):
the documented promise "any format PIL reads" (docs/own-data.md, "Image files") holds the same way when a
dataset folder is read, audited and when ``benchkit predict`` searches a folder.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                           if fmt in Image.OPEN)
"""File name endings PIL opens (lower case, with the dot)."""


def is_image_file(path: Path) -> bool:
    """A file (symlinks followed) whose ending is in :data:`IMAGE_SUFFIXES`."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file()


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files directly in ``folder`` (or below it), sorted by path; none when it is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_file(p))
