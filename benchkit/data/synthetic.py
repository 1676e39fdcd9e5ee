"""A built-in synthetic ordinal dataset: a 'scalp' whose bald patch grows with the level.

Each image is drawn from a seed derived from (seed, split, index), so any size and count is
reproducible without files or downloads. Level k has a bald patch of radius ~ (k + 1) / (K + 1) of
the head, jittered so neighbouring levels overlap a little, like real grading.

>>> ds = make_synthetic_dataset(num_classes=4, sizes={"train": 8, "valid": 4, "test": 4}, image_size=32)
>>> ds.splits["train"].load_image(0).size
(32, 32)
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from benchkit.data.datasets import Dataset, Split


def make_synthetic_dataset(num_classes: int = 6, sizes: dict[str, int] | None = None,
                           image_size: int = 64, seed: int = 0, noise: float = 0.15) -> Dataset:
    """Build a :class:`Dataset` of procedurally drawn images with balanced, shuffled levels."""
    sizes = sizes or {"train": 240, "valid": 60, "test": 60}
    splits = {}
    for split_name, count in sizes.items():
        split_seed = zlib.crc32(f"{seed}:{split_name}".encode())
        rng = np.random.default_rng(split_seed)
        labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
        ids = [f"{split_name}/synthetic_{i:05d}_L{labels[i]}.png" for i in range(count)]
        render = _Renderer(labels, num_classes, image_size, split_seed, noise)
        groups = [f"{split_name}-subject{i // 2}" for i in range(count)]  # two views per subject
        splits[split_name] = Split(split_name, ids, labels, render=render, groups=groups)
    classes = [f"LEVEL_{k}" for k in range(num_classes)]
    return Dataset("synthetic", classes, splits)


class _Renderer:
    """Picklable image generator (DataLoader workers and Ray tasks need to pickle splits)."""

    def __init__(self, labels, num_classes, image_size, split_seed, noise):
        self.labels, self.num_classes = labels, num_classes
        self.image_size, self.split_seed, self.noise = image_size, split_seed, noise

    def __call__(self, index: int) -> Image.Image:
        return draw_scalp(int(self.labels[index]), self.num_classes, self.image_size,
                          np.random.default_rng([self.split_seed, index]), self.noise)

    __getitem__ = __call__


def draw_scalp(level: int, num_classes: int, size: int, rng: np.random.Generator,
               noise: float = 0.15) -> Image.Image:
    """Draw one image: hair-textured head disc with a skin-coloured patch growing with ``level``."""
    canvas = 4 * size
    bg = tuple(int(v) for v in rng.integers(20, 90, 3))
    img = Image.new("RGB", (canvas, canvas), bg)
    draw = ImageDraw.Draw(img)
    cx, cy = canvas / 2 + rng.normal(0, canvas * 0.03, 2)
    head_r = canvas * rng.uniform(0.36, 0.44)
    hair = tuple(int(v) for v in rng.integers(25, 70, 3))
    draw.ellipse([cx - head_r, cy - head_r, cx + head_r, cy + head_r], fill=hair)
    for _ in range(400):
        a, r = rng.uniform(0, 2 * np.pi), head_r * np.sqrt(rng.uniform(0, 0.95))
        x, y = cx + r * np.cos(a), cy + r * np.sin(a)
        d = rng.uniform(-1, 1, 2) * canvas * 0.03
        shade = tuple(int(c) for c in np.clip(np.array(hair) + rng.integers(-25, 25, 3), 0, 255))
        draw.line([x, y, x + d[0], y + d[1]], fill=shade, width=max(1, canvas // 128))
    fraction = (level + 1) / (num_classes + 1) + rng.normal(0, noise / num_classes)
    bald_r = head_r * float(np.clip(fraction, 0.05, 0.95))
    bx, by = cx + rng.normal(0, head_r * 0.08), cy - head_r * 0.1 + rng.normal(0, head_r * 0.08)
    skin = (int(rng.integers(190, 235)), int(rng.integers(150, 190)), int(rng.integers(120, 160)))
    aspect = rng.uniform(0.8, 1.2)
    draw.ellipse([bx - bald_r * aspect, by - bald_r / aspect, bx + bald_r * aspect, by + bald_r / aspect],
                 fill=skin)
    img = img.filter(ImageFilter.GaussianBlur(canvas / 160)).resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
