"""Input figures on the real data at 224: the one-off cache build, resident memory, loader throughput.

The cached loader is what the engine uses: ``ImageArrayDataset`` over the memory-mapped disk cache,
read a shuffled batch at a time by ``benchkit.training.batches.batch_loader``, then kornia's reference
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

from benchkit.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from benchkit.data.datasets import Split
from benchkit.data.image_cache import ImageCache
from benchkit.training.batches import batch_loader
from benchkit.data.decode import ImageArrayDataset
from benchkit.training.transforms import BatchPreprocessor, reference_augmentation

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

    Each repeat times one epoch per side back to back (the same seed, so the same random transforms);
    a figure is the median over repeats of those paired ratios, which tolerates a busy machine.
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
    n = len(sub)
    figures = []
    for augment in (True, False):
        pairs = [{kind: n / _epoch(loaders[kind], prep, augment, seed=r) for kind in ("decode", "cached")}
                 for r in range(repeats)]
        ratios = [p["cached"] / p["decode"] for p in pairs]
        ratio = float(np.median(ratios))
        cached = float(np.median([p["cached"] for p in pairs]))
        decode = float(np.median([p["decode"] for p in pairs]))
        details = {"images": n, "batch": BATCH, "workers": 0, "repeats": repeats, "paired_ratios": ratios,
                   "cached_images_per_s": cached, "decode_images_per_s": decode}
        note = f"median {cached:.1f} vs {decode:.1f} images/s over {repeats} paired epochs of {n} images"
        if augment:
            figures.append(Figure("input_pipeline_cached_vs_decode_with_augmentation", ratio, ">= 5x",
                                  ratio >= 5, "x", details, note=note))
        else:
            figures.append(Figure("input_pipeline_cached_vs_decode_without_augmentation", ratio,
                                  "breakdown, no target", None, "x", details, note=note))
    with_aug, without = figures
    aug_ms = 1000 * (1 / with_aug.details["cached_images_per_s"] - 1 / without.details["cached_images_per_s"])
    with_aug.details["augmentation_ms_per_image"] = aug_ms
    with_aug.note += f"; kornia reference augmentation ~{aug_ms:.0f} ms/image on this CPU"
    return figures


def _check_same_pixels(rows, decoded: DecodeEveryEpoch) -> None:
    """The baseline must feed the same images: its torchvision resize may differ by rounding only."""
    for i in (0, len(decoded) - 1):
        diff = np.abs(np.asarray(rows[i], dtype=np.int16) - decoded[i][0].numpy().astype(np.int16))
        if diff.mean() > 2.0:
            raise AssertionError(f"baseline image {i} differs from the cached one "
                                 f"(mean |diff| {diff.mean():.2f})")
