"""Images as a user hands them to a trained run: files, folders, PIL images, uint8 arrays and tensors.

Every kind becomes the same thing training saw: an 8-bit RGB PIL image (:func:`benchkit.data.rgb.to_rgb`)
resized by :func:`benchkit.data.decode.decode_image`, so one picture gives the same input, and the same
prediction, whether it came as a path, a PIL image, an ``(H, W, 3)`` uint8 array or a ``(3, H, W)``
uint8 tensor. Decoding is done a batch at a time (:func:`decode_batches`), so a folder of any size
never sits in memory at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from benchkit.data.decode import decode_image
from benchkit.data.image_files import IMAGE_SUFFIXES, image_files as _image_files
from benchkit.data.rgb import to_rgb
from benchkit.errors import DataError


def folder_images(folder: Path) -> list[Path]:
    """The image files in ``folder`` and its subfolders (:data:`IMAGE_SUFFIXES`), sorted by path."""
    return _image_files(folder, recursive=True)


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files in each folder (recursively, sorted by path)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = folder_images(path)
            if not inside:
                raise DataError(f"{path}: no image files in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES)[:8])}, ...)")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"image not found: {path}")
    return found


def as_items(images: Any) -> list:
    """One image or many, as a list of single images (a 4-D array or tensor is a batch of many)."""
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (bytes, dict)) or not isinstance(images, Iterable):
        raise DataError(f"images: expected an image file or folder, a PIL image, a uint8 array, a tensor or a "
                        f"list of those, got {type(images).__name__} {str(images)[:60]!r}")
    return list(images)


def with_folders_opened(items: list) -> list:
    """``items`` with each folder path replaced by the image files in it (recursively, sorted), as the
    command line takes folders; a DataError naming a folder without image files."""
    if not any(isinstance(item, (str, Path)) and Path(item).is_dir() for item in items):
        return items
    found: list = []
    for item in items:
        found.extend(image_files([item]) if isinstance(item, (str, Path)) and Path(item).is_dir() else [item])
    return found


def describe(item: Any, index: int) -> str:
    """How an image is named in results: its path, else its position."""
    return str(item) if isinstance(item, (str, Path)) else str(index)


def to_pil(item: Any) -> Image.Image:
    """One image of any accepted kind as 8-bit RGB PIL."""
    if isinstance(item, (str, Path)):
        return open_image(Path(item))
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, torch.Tensor):
        item = _tensor_to_hwc(item)
    if isinstance(item, np.ndarray):
        return to_rgb(Image.fromarray(_array_to_hwc(item)))
    raise DataError(f"cannot read an image from a {type(item).__name__}: give a path, a PIL image, a uint8 "
                    f"array (H, W[, C]) or a tensor (C, H, W)")


def decode(items: Sequence, size: int) -> torch.Tensor:
    """Images of any accepted kind as one ``(N, 3, size, size)`` uint8 tensor."""
    if not items:
        return torch.empty(0, 3, size, size, dtype=torch.uint8)
    return torch.from_numpy(np.stack([decode_image(to_pil(item), size) for item in items]))


def decode_batches(items: Sequence, size: int, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, uint8 batch)`` for consecutive slices of ``items``, each decoded only when reached."""
    for start in range(0, len(items), batch_size):
        yield start, decode(items[start:start + batch_size], size)


def open_image(path: Path) -> Image.Image:
    """An image file as 8-bit RGB, or a DataError naming the file."""
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image: {exc}") from None


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """A ``(C, H, W)`` or ``(H, W)`` tensor (torchvision's layout) as an ``(H, W[, C])`` uint8 array.

    Float tensors are taken as 0..1 (``ToTensor``) and scaled by 255, rounded.
    """
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = (tensor.clamp(0, 1) * 255).round().to(torch.uint8)
    if tensor.dtype != torch.uint8:
        raise DataError(f"an image tensor must be uint8 (0..255) or float (0..1), got {tensor.dtype}")
    if tensor.ndim == 3:
        if tensor.shape[0] not in (1, 3, 4):
            raise DataError(f"an image tensor is (C, H, W) with C = 1, 3 or 4, got shape {tuple(tensor.shape)}")
        tensor = tensor.permute(1, 2, 0)
    return tensor.numpy()


def _array_to_hwc(array: np.ndarray) -> np.ndarray:
    """An ``(H, W)``, ``(H, W, 1|3|4)`` uint8 array (PIL's and OpenCV-after-RGB's layout), checked."""
    if array.dtype != np.uint8:
        raise DataError(f"an image array must be uint8 (0..255), got {array.dtype}: scale it first, "
                        f"e.g. (a * 255).round().astype('uint8') for values in 0..1")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise DataError(f"an image array is (H, W) or (H, W, 3|4), got shape {array.shape}")
    return np.ascontiguousarray(array)
