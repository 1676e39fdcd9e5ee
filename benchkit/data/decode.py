"""Decode-once image arrays: every image of a split, resized to the input size, as uint8.

Training reads batches from these arrays and augments them on the device (see
:mod:`benchkit.training.transforms`), so JPEG decoding happens once per (image, size), not once per epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from benchkit.data.datasets import Split


def decode_image(image: Image.Image, size: int) -> np.ndarray:
    """RGB image -> ``(3, size, size)`` uint8, resized with antialiased bilinear filtering."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def decode_split(split: Split, size: int, progress=None) -> np.ndarray:
    """All images of ``split`` as one ``(N, 3, size, size)`` uint8 array."""
    out = np.empty((len(split), 3, size, size), dtype=np.uint8)
    for i in range(len(split)):
        out[i] = decode_image(split.load_image(i), size)
        if progress is not None:
            progress(i + 1, len(split))
    return out


class ImageArrayDataset(Dataset):
    """``(uint8 image tensor, level)`` pairs over a decoded array (in RAM or memory-mapped)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return torch.from_numpy(np.array(self.images[index])), int(self.labels[index])

    def gather(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one copy: ``(uint8 (B, 3, S, S), levels (B,))``, no per-image tensors."""
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.asarray(self.images[idx])), torch.from_numpy(self.labels[idx])
