"""Decoded images on disk: each image decoded and resized once per (file content, size), memory-mapped.

One folder per (size, resize settings) under the cache directory holds ``pixels.u8`` (rows of
``3 x size x size`` uint8, appended only) and ``index.json`` (content hash -> row, written
atomically). A split is looked up by the blake2b hashes of its files' bytes, so a changed file
gets a new row, an unchanged one is never decoded again, and a new size gets its own folder.
Writers hold a lock file; readers map only rows an index already lists, so concurrent processes
never see a half-written row.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from benchkit.data.datasets import Split
from benchkit.errors import DataError
from benchkit.data.decode import decode_image
from benchkit.data.rgb import to_rgb
from benchkit.io import file_lock, write_json
from benchkit.memo import Memo

CACHE_ENV = "BENCHKIT_CACHE_DIR"
IMAGES_FOLDER = "images"
RESIZE_SETTINGS = "pil-rgb-bilinear-v3"
"""Names the decode (:func:`benchkit.data.rgb.to_rgb`, then :func:`benchkit.data.decode.decode_image`);
change it when that decode changes (v2: 16-bit and float images scaled, not clipped; v3: EXIF orientation
applied)."""
INDEX_FORMAT = 1


def resolve_cache_dir(configured: str | Path | None = None, base_dir: Path | None = None) -> Path:
    """``data.cache_dir`` (relative to ``base_dir``), else ``$BENCHKIT_CACHE_DIR``, else ~/.cache/benchkit."""
    if configured is not None:
        path = Path(configured).expanduser()
        return path if path.is_absolute() or base_dir is None else Path(base_dir) / path
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "benchkit"


_HASHES = Memo("content-hashes", maxsize=65536)


def content_hash(path: Path) -> str:
    """blake2b (128-bit) of the file's bytes, remembered per process by (path, mtime, size)."""
    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    return _HASHES.get(key, lambda: hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest())


def decode_bytes(data: bytes, size: int) -> np.ndarray:
    """Encoded image bytes -> ``(3, size, size)`` uint8, the same pixels as a direct decode."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = to_rgb(img)
    return decode_image(rgb, size)


class MappedRows:
    """The rows of a split, in split order, read from a memory-mapped pixel file.

    Behaves like a read-only ``(N, 3, S, S)`` uint8 array for ``len``, integer, slice and index
    array access and ``np.asarray``. ``fingerprint`` identifies the content (hashes and settings).
    """

    def __init__(self, pixels: np.ndarray, rows: np.ndarray, fingerprint: str):
        self._pixels = pixels
        self._rows = np.asarray(rows, dtype=np.int64)
        self.fingerprint = fingerprint

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._rows), *self._pixels.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._pixels.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        return self._pixels[self._rows[index]]

    def __array__(self, dtype=None, copy=None):
        out = self._pixels[self._rows]
        return out.astype(dtype) if dtype is not None else out


class ImageCache:
    """Decoded images of one input size under ``root``; ``decoded`` counts images this object decoded."""

    def __init__(self, root: str | Path, size: int, workers: int | None = None):
        self.size = int(size)
        self.folder = Path(root) / IMAGES_FOLDER / f"{self.size}px-{RESIZE_SETTINGS}"
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.row_bytes = 3 * self.size * self.size
        self.decoded = 0

    @property
    def pixels_path(self) -> Path:
        return self.folder / "pixels.u8"

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    def read_index(self) -> dict:
        """The committed index (rows and ``entries``: hash -> row); empty when none exists yet."""
        if not self.index_path.is_file():
            return {"format": INDEX_FORMAT, "size": self.size, "resize": RESIZE_SETTINGS, "rows": 0,
                    "entries": {}}
        index = json.loads(self.index_path.read_text(encoding="utf-8"))
        if index.get("format") != INDEX_FORMAT or index.get("size") != self.size:
            raise DataError(f"{self.index_path}: not an image cache index for size {self.size} "
                            f"(format {index.get('format')}); delete the folder {self.folder}")
        return index

    def split_array(self, split: Split, progress: bool = True) -> MappedRows:
        """The split's images as :class:`MappedRows`, decoding only files whose content is new."""
        if split.paths is None:
            raise DataError(f"split {split.name!r} has no image files to cache")
        hashes = [content_hash(p) for p in split.paths]
        index = self.read_index()
        if any(h not in index["entries"] for h in hashes):
            index = self._add(split, hashes, progress)
        rows = np.array([index["entries"][h] for h in hashes], dtype=np.int64)
        return MappedRows(self._map(index["rows"]), rows, self._fingerprint(hashes))

    def _fingerprint(self, hashes: Sequence[str]) -> str:
        digest = hashlib.blake2b(f"{self.size}|{RESIZE_SETTINGS}|".encode(), digest_size=16)
        digest.update("\n".join(hashes).encode())
        return digest.hexdigest()

    def _map(self, rows: int) -> np.ndarray:
        shape = (rows, 3, self.size, self.size)
        if rows == 0:
            return np.empty(shape, dtype=np.uint8)
        return np.memmap(self.pixels_path, dtype=np.uint8, mode="r", shape=shape)

    def _add(self, split: Split, hashes: list[str], progress: bool) -> dict:
        with file_lock(self.folder / ".lock"):
            index = self.read_index()
            todo: dict[str, Path] = {}
            for h, path in zip(hashes, split.paths):
                if h not in index["entries"] and h not in todo:
                    todo[h] = path
            if not todo:
                return index
            rows = index["rows"]
            with open(self.pixels_path, "ab+") as fh:
                fh.truncate(rows * self.row_bytes)
                fh.seek(rows * self.row_bytes)
                for h, pixels in self._decode_all(split.name, todo, progress):
                    fh.write(pixels.tobytes())
                    index["entries"][h] = rows
                    rows += 1
                fh.flush()
                os.fsync(fh.fileno())
            index["rows"] = rows
            write_json(self.index_path, index)
            return index

    def _decode_all(self, split_name: str, todo: dict[str, Path], progress: bool):
        """Yield ``(hash, pixels)`` in order, decoding on a thread pool (PIL releases the GIL)."""
        def work(item):
            h, path = item
            data = Path(path).read_bytes()
            if hashlib.blake2b(data, digest_size=16).hexdigest() != h:
                raise DataError(f"{path}: the file changed while it was being cached; run again")
            try:
                return h, decode_bytes(data, self.size)
            except Exception as exc:
                raise DataError(f"{path}: cannot be decoded ({type(exc).__name__}: {exc})") from None

        from benchkit.progress import TaskProgress
        with ThreadPoolExecutor(self.workers) as pool, TaskProgress(
                f"decoding {len(todo)} {split_name} image(s) at {self.size}px", len(todo), progress,
                note="cached for later runs") as bar:
            for h, pixels in pool.map(work, todo.items()):
                self.decoded += 1
                bar.advance()
                yield h, pixels


def cached_split(split: Split, size: int, cache_dir: str | Path | None = None,
                 progress: bool = True) -> MappedRows:
    """The split's images at ``size`` from the disk cache in ``cache_dir`` (see :func:`resolve_cache_dir`)."""
    return ImageCache(resolve_cache_dir(cache_dir), size).split_array(split, progress)
