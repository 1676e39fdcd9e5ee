"""Input figures on the real data at 224: the one-off cache build, resident memory, loader throughput.

The cached loader is what the engine uses: ``ImageArrayDataset`` over the memory-mapped disk cache,
read a shuffled batch at a time by ``benchkit.engine.batch_loader``, then kornia's reference
augmentation on the batch. The baseline decodes
every 640x640 JPEG with PIL each epoch and resizes it with torchvision, then applies the very same
batch augmentation, so the two differ only in where the pixels come from.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchkit.backbone import IMAGENET_MEAN, IMAGENET_STD
from benchkit.datasets import Split
from benchkit.diskcache import ImageCache
from benchkit.engine import batch_loader
from benchkit.imagecache import ImageArrayDataset
from benchkit.transforms import BatchPreprocessor, reference_augmentation

from _bench import FLOAT32_TRAIN_BYTES, Figure, resident_bytes, timed

SIZE = 224
BATCH = 32


class DecodeEveryEpoch(Dataset):
    """The naive pipeline: PIL decode + torchvision resize of the original file on every access."""

    def __init__(self, split: Split, size: int):
        self.split = split
        self.to_tensor = v2.Compose([v2.Resize((size, size), antialias=True), v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        with Image.open(self.split.paths[index]) as img:
            return self.to_tensor(img.convert("RGB")), int(self.split.labels[index])


def cache_build(split: Split, cache_dir) -> tuple[Figure, ImageCache]:
    """Decode the split into an empty disk cache once (the cost later epochs never pay again)."""
    cache = ImageCache(cache_dir, SIZE)
    seconds, _ = timed(lambda: cache.split_array(split, progress=False))
    figure = Figure("cache_build_seconds", seconds, "one-off, not per epoch", None, " s",
                    {"images": len(split), "decoded": cache.decoded, "workers": cache.workers,
                     "images_per_second": len(split) / seconds},
                    note=f"{len(split)} train images ({cache.decoded} distinct files) decoded at {SIZE}px "
                         f"on {cache.workers} threads")
    return figure, cache


def memory(split: Split, cache: ImageCache) -> Figure:
    """Resident growth of this process once every cached image was read, vs the float32 tensor.

    The split is mapped and every row read (all its pages resident); then one shuffled training
    epoch runs over it, whose extra anonymous memory (batch buffers) is reported beside it.
    """
    before = resident_bytes()
    rows = cache.split_array(split, progress=False)
    checksum = sum(int(rows[i].sum(dtype=np.uint64)) for i in range(len(rows)))
    mapped = resident_bytes()
    loader = batch_loader(ImageArrayDataset(rows, split.labels), BATCH, shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    seen = sum(len(y) for _, y in loader)
    after = resident_bytes()
    float32 = len(split) * 3 * SIZE * SIZE * 4
    grown = mapped["rss"] - before["rss"]
    ratio = grown / float32
    return Figure("memory_cached_train_split_vs_float32", ratio, "<= 0.3x", ratio <= 0.3, "x",
                  {"images": len(rows), "resident_growth_mb": grown / 1e6,
                   "file_backed_growth_mb": (mapped["file"] - before["file"]) / 1e6,
                   "anon_growth_mb": (mapped["anon"] - before["anon"]) / 1e6,
                   "after_one_epoch_growth_mb": (after["rss"] - before["rss"]) / 1e6,
                   "epoch_images": seen, "checksum": checksum,
                   "uint8_bytes_mb": rows.nbytes / 1e6, "float32_tensor_mb": float32 / 1e6,
                   "seed_study_float32_mb": FLOAT32_TRAIN_BYTES / 1e6},
                  note=f"{grown / 1e6:.0f} MB resident for {len(rows)} images vs {float32 / 1e6:.0f} MB "
                       f"as float32")


def _epoch(loader: DataLoader, prep: BatchPreprocessor, augment: bool, seed: int) -> float:
    torch.manual_seed(seed)
    seconds, _ = timed(lambda: [prep(x, train=augment) for x, _ in _no_grad(loader)])
    return seconds


def _no_grad(loader):
    with torch.no_grad():
        yield from loader


def pipeline(split: Split, cache: ImageCache, images: int, repeats: int = 1) -> list[Figure]:
    """Images/s of the cached loader over the decode-every-epoch loader, with and without augmentation.

    The augmented epochs run once per side with the same seed (the same random transforms); the
    cheap unaugmented epochs are repeated ``repeats`` times and the best kept.
    """
    sub = split.subset(range(min(images, len(split))))
    rows = cache.split_array(sub, progress=False)
    prep = BatchPreprocessor(reference_augmentation(SIZE), IMAGENET_MEAN, IMAGENET_STD)
    loaders = {
        "cached": batch_loader(ImageArrayDataset(rows, sub.labels), BATCH, shuffle=True,
                               generator=torch.Generator().manual_seed(0)),
        "decode": DataLoader(DecodeEveryEpoch(sub, SIZE), batch_size=BATCH, shuffle=True,
                             generator=torch.Generator().manual_seed(0)),
    }
    _check_same_pixels(rows, loaders["decode"].dataset)
    with torch.no_grad():
        for loader in loaders.values():  # warm-up: first batch of each, both code paths
            x, _ = next(iter(loader))
            prep(x[:4], train=True)
    times = {(kind, aug): [] for kind in loaders for aug in (True, False)}
    for r in range(repeats):
        for kind in ("decode", "cached"):
            times[(kind, False)].append(_epoch(loaders[kind], prep, False, seed=r))
    for kind in ("decode", "cached"):
        times[(kind, True)].append(_epoch(loaders[kind], prep, True, seed=0))
    best = {k: min(v) for k, v in times.items()}
    n = len(sub)
    rate = {k: n / s for k, s in best.items()}
    with_aug = rate[("cached", True)] / rate[("decode", True)]
    without = rate[("cached", False)] / rate[("decode", False)]
    aug_ms = 1000 * (best[("cached", True)] - best[("cached", False)]) / n
    details = {"images": n, "batch": BATCH, "workers": 0, "repeats": repeats,
               "cached_images_per_s": rate[("cached", True)], "decode_images_per_s": rate[("decode", True)],
               "augmentation_ms_per_image": aug_ms}
    return [
        Figure("input_pipeline_cached_vs_decode_with_augmentation", with_aug, ">= 5x", with_aug >= 5, "x",
               details, note=f"{rate[('cached', True)]:.1f} vs {rate[('decode', True)]:.1f} images/s on "
                             f"{n} images; kornia reference augmentation {aug_ms:.0f} ms/image here"),
        Figure("input_pipeline_cached_vs_decode_without_augmentation", without, "breakdown, no target",
               None, "x", {"images": n, "cached_images_per_s": rate[("cached", False)],
                           "decode_images_per_s": rate[("decode", False)]},
               note=f"{rate[('cached', False)]:.0f} vs {rate[('decode', False)]:.0f} images/s"),
    ]


def _check_same_pixels(rows, decoded: DecodeEveryEpoch) -> None:
    """The baseline must feed the same images: its torchvision resize may differ by rounding only."""
    for i in (0, len(decoded) - 1):
        diff = np.abs(np.asarray(rows[i], dtype=np.int16) - decoded[i][0].numpy().astype(np.int16))
        if diff.mean() > 2.0:
            raise AssertionError(f"baseline image {i} differs from the cached one "
                                 f"(mean |diff| {diff.mean():.2f})")
