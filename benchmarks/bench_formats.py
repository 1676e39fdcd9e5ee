"""Reading a MedMNIST-size ``.npz`` against loading its image array: what the ``medmnist_npz`` format keeps in memory.

The baseline is the array itself (``np.load(...)[key]``: every pixel in anonymous memory). The format reads the
labels, lists the rows and loads a few images; an uncompressed file is memory-mapped, so the pixels it touched
stay file-backed pages the kernel may drop. The figure is the ratio of the anonymous memory each adds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchkit.config.schema import DataConfig
from benchkit.data.reading import read_dataset

from _bench import Figure, resident_bytes


def npz_memory(folder: Path, images: int, size: int = 224) -> Figure:
    """Anonymous memory added by reading a stored (uncompressed) npz of ``images`` RGB images vs loading it."""
    path = folder / "bench_medmnist.npz"
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    small = train[:8]
    np.savez(path, train_images=train, train_labels=np.arange(images).reshape(-1, 1) % 5,
             val_images=small, val_labels=np.arange(8).reshape(-1, 1) % 5)
    array_bytes = train.nbytes
    del train, small
    before = resident_bytes()["anon"]
    dataset = read_dataset(DataConfig(format="medmnist_npz", root=path))
    for index in range(0, len(dataset.splits["train"]), max(1, images // 16)):
        dataset.splits["train"].load_image(index)
    read_anon = resident_bytes()["anon"] - before
    del dataset
    before = resident_bytes()["anon"]
    with np.load(path) as npz:
        loaded = npz["train_images"]
    load_anon = resident_bytes()["anon"] - before
    del loaded
    path.unlink()
    ratio = read_anon / max(load_anon, 1)
    return Figure("medmnist_npz_read_vs_load_anon_memory", ratio, "<= 0.1x", ratio <= 0.1, "x",
                  {"images": images, "size": size, "array_mb": array_bytes / 1e6, "read_anon_mb": read_anon / 1e6,
                   "load_anon_mb": load_anon / 1e6},
                  note=f"{read_anon / 1e6:.0f} MB vs {load_anon / 1e6:.0f} MB for a {array_bytes / 1e6:.0f} MB array")
