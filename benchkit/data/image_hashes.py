"""Image facts for the audit: full decodes (truncation is an error), content hashes and a perceptual hash
that ignores 90-degree rotations and flips, with the near-duplicate pairs it finds."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile
from scipy.fft import dctn

from benchkit.data.rgb import to_rgb
from benchkit.memo import memoized

_HASH_SIDE = 32
_LOW_FREQ = 8


@dataclass
class Facts:
    """One file's content hash, size, mode, decode error and hash thumbnail."""

    sha256: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None
    thumb: np.ndarray | None = None


@contextmanager
def _strict_decoding():
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def inspect_all(paths: list[Path], workers: int) -> list[Facts]:
    """The facts of each file, read on ``workers`` threads (each file version once per process)."""
    seen: dict[Path, Facts] = {}
    unique = list(dict.fromkeys(paths))
    with _strict_decoding(), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, facts in zip(unique, pool.map(_inspect_current, unique)):
            seen[path] = facts
    return [seen[p] for p in paths]


def inspect_arrays(rows: list[tuple[Any, int]]) -> list[Facts]:
    """The facts of images held as array rows ``(images, index)``: ``images[index]`` an array or a PIL image."""
    out = []
    for images, index in rows:
        item = images[index]
        image = item if isinstance(item, Image.Image) else Image.fromarray(np.ascontiguousarray(
            np.asarray(item)[..., 0] if np.ndim(item) == 3 and np.shape(item)[2] == 1 else item))
        facts = Facts(sha256=hashlib.sha256(image.tobytes()).hexdigest(), size=image.size, mode=image.mode)
        facts.thumb = hash_thumbnail(image)
        out.append(facts)
    return out


def _inspect_current(path: Path) -> Facts:
    """:func:`_inspect` remembered per file version (path, modification time, size): an audit repeated in one
    process (a check of several experiments on one dataset) decodes each unchanged file once."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return Facts(error="missing file")
    except OSError as exc:
        return Facts(error=f"cannot be read ({exc})")
    return _inspect_version(str(path), stat.st_mtime_ns, stat.st_size)


@memoized("image-facts", maxsize=4096)
def _inspect_version(path: str, mtime_ns: int, size: int) -> Facts:
    return _inspect(Path(path))


def forget_facts() -> None:
    """Drop the remembered facts (bounded to 4096 file versions, about 35 MB)."""
    _inspect_version.memo.clear()


def _inspect(path: Path) -> Facts:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Facts(error="missing file")
    except OSError as exc:
        return Facts(error=f"cannot be read ({exc})")
    if not data:
        return Facts(error="empty file")
    facts = Facts(sha256=hashlib.sha256(data).hexdigest())
    try:
        with Image.open(io.BytesIO(data)) as img:
            facts.size, facts.mode = img.size, img.mode
            img.load()
        facts.thumb = hash_thumbnail(Image.open(io.BytesIO(data)))
    except Exception as exc:  # PIL raises several types for corrupt or truncated data
        facts.error = f"cannot be decoded ({type(exc).__name__}: {exc})"
    return facts


def hash_thumbnail(img: Image.Image) -> np.ndarray:
    """The 32x32 grayscale array the perceptual hash is computed from (JPEGs decoded at 1/8 scale)."""
    with img:
        img.draft("L", (2 * _HASH_SIDE, 2 * _HASH_SIDE))
        small = to_rgb(img).convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def dihedral_phash(thumbs: np.ndarray) -> np.ndarray:
    """64-bit DCT pHashes of the 8 rotations/flips of each thumbnail: (N, 32, 32) -> (N, 8) uint64.

    Per transform: unnormalised 2-D DCT-II (as the imagehash package computes it), the 8x8 lowest
    frequencies, a bit set where a coefficient exceeds their median (the classic pHash). Transform 0
    is the image itself.
    """
    thumbs = np.asarray(thumbs, dtype=np.float64)
    if thumbs.ndim == 2:
        thumbs = thumbs[None]
    variants = []
    for quarter_turns in range(4):
        turned = np.rot90(thumbs, quarter_turns, axes=(-2, -1))
        variants += [turned, turned[..., ::-1]]
    stack = np.stack(variants, axis=1)
    low = dctn(stack, type=2, axes=(-2, -1))[..., :_LOW_FREQ, :_LOW_FREQ]
    low = low.reshape(*low.shape[:2], _LOW_FREQ * _LOW_FREQ)
    bits = low > np.median(low, axis=-1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return np.bitwise_or.reduce(np.where(bits, weights, np.uint64(0)), axis=-1)


def near_duplicate_pairs(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose rotation/flip-invariant Hamming distance is ``<= threshold``.

    The distance of A and B is the smallest Hamming distance between any transform of one and the
    other as given, taken both ways round. Returns (i, j, distance) arrays.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found_i, found_j, found_d = [], [], []
    block = max(1, 2_000_000 // max(n, 1))
    plain = hashes[:, 0]
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        one_way = _popcount(hashes[rows, :, None] ^ plain[None, None, :]).min(axis=1)
        other_way = _popcount(hashes[None, :, :] ^ plain[rows, None, None]).min(axis=2)
        dist = np.minimum(one_way, other_way)
        i, j = np.nonzero(dist <= threshold)
        i += start
        keep = j > i
        found_i.append(i[keep])
        found_j.append(j[keep])
        found_d.append(dist[i[keep] - start, j[keep]])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d).astype(np.int64)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = words[..., None].view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint8)
