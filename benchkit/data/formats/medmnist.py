"""``medmnist_npz``: a MedMNIST ``.npz`` file (RetinaMNIST, ...), read with numpy alone.

The file holds ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images`` and
``test_labels`` (``val`` becomes the ``valid`` split): images ``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB
uint8 at any of MedMNIST's sizes (28, 64, 128, 224), labels ``(N,)`` or ``(N, 1)`` integer levels. Grey
images become 3-channel RGB for ImageNet backbones. ``data.root`` is the file, or its folder with
``data.options.file``. The ``medmnist`` package is not needed (its loader downloads).

Images are not loaded when the file is read: an uncompressed member (``np.savez``) is memory-mapped
where it lies in the file, a compressed one (``np.savez_compressed``) is decompressed once per process
when its first image is needed. MedMNIST files carry no patient ids, so subjects are unknown: a grouped
``data.split`` needs ``data.subject_regex: '(?P<subject>.+)'`` (each image its own subject).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchkit.data.labels import LabelTable
from benchkit.data.reading import DatasetFormat
from benchkit.errors import DataError
from benchkit.registry import register_dataset_format

SPLIT_KEYS = {"train": "train", "valid": "val", "test": "test"}


class MedmnistOptions(BaseModel):
    """``data.options`` of the ``medmnist_npz`` format."""

    model_config = ConfigDict(extra="forbid")
    file: str | None = Field(None, description="the .npz file, relative to data.root (when data.root is a folder)")


@register_dataset_format("medmnist_npz")
class MedmnistNpz(DatasetFormat):
    """MedMNIST's ``<split>_images`` / ``<split>_labels`` arrays in one ``.npz`` file."""

    Options = MedmnistOptions

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".npz"

    def read(self, table: LabelTable) -> None:
        path = Path(table.root)
        if table.options.file is not None:
            path = path / table.options.file
        if not path.is_file():
            raise DataError(f"MedMNIST file not found: {path}" + (" (data.options.file)" if table.options.file
                                                                  else ""))
        table.root, table.name = path.parent, path.stem
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = set(npz.files)
                labels = {split: np.asarray(npz[f"{key}_labels"]) for split, key in SPLIT_KEYS.items()
                          if f"{key}_labels" in keys}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
        if not labels:
            raise DataError(f"{path}: no train_labels/val_labels/test_labels arrays (a MedMNIST .npz holds "
                            f"train_, val_ and test_ images and labels; found {sorted(keys)})")
        for split, levels in labels.items():
            key = SPLIT_KEYS[split]
            images = NpzArray(path, f"{key}_images")
            problem = _shape_problem(images, levels, key, keys)
            if problem:
                table.problem(problem, where=path.name, split=split)
                continue
            for index, level in enumerate(levels.reshape(-1).tolist()):
                table.add_array(split, images, index, level, name=f"{key}_images[{index}]", where=path.name,
                                line=None)


def _shape_problem(images: "NpzArray", levels: np.ndarray, key: str, keys: set[str]) -> str | None:
    if f"{key}_images" not in keys:
        return f"{key}_labels has no {key}_images beside it"
    shape, dtype = images.header()
    if levels.ndim > 2 or (levels.ndim == 2 and levels.shape[1] != 1):
        return f"{key}_labels has shape {levels.shape}: one level per image is needed (not multi-label)"
    if not np.issubdtype(levels.dtype, np.integer):
        return f"{key}_labels holds {levels.dtype} values, not integer levels"
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        return f"{key}_images has shape {shape}: expected (N, H, W) grey or (N, H, W, 3) RGB"
    if dtype != np.uint8:
        return f"{key}_images holds {dtype} pixels, not uint8"
    if shape[0] != len(levels):
        return f"{key}_images has {shape[0]} images but {key}_labels {len(levels)} labels"
    return None


class NpzArray:
    """One array of a ``.npz`` file, read on first use (memory-mapped when stored uncompressed); picklable."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self._array = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "key": self.key, "_array": None}

    def __getitem__(self, index):
        if self._array is None:
            self._array = self._load()
        return self._array[index]

    def header(self) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype from the member's ``.npy`` header, without reading its data."""
        with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.key}.npy") as member:
            shape, _, dtype = _read_header(member)
        return shape, dtype

    def _load(self) -> np.ndarray:
        with zipfile.ZipFile(self.path) as archive:
            info = archive.getinfo(f"{self.key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(self.path, "rb") as fh:
                fh.seek(info.header_offset)
                fields = struct.unpack("<4s5H3I2H", fh.read(30))
                fh.seek(info.header_offset + 30 + fields[-2] + fields[-1])
                shape, fortran, dtype = _read_header(fh)
                offset = fh.tell()
            return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order="F" if fortran else "C")
        with np.load(self.path, allow_pickle=False) as npz:
            return npz[self.key]


def _read_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return reader(fh)
