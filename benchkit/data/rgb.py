"""Any image as 8-bit RGB: the one conversion the dataset readers, the image cache, the audit and predict use.

PIL's own ``convert("RGB")`` clips 16-bit, 32-bit and float images at 255, so most of such a picture
turns white. Here they are scaled instead, by a fixed rule (docs/own-data.md, "Image files"):

- 16-bit (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``): ``round(v / 257)`` (65535 -> 255);
- 32-bit integer (``I``): the same when every value lies in 0..65535 (how PIL opens some 16-bit
  files), else the image's own minimum..maximum stretched to 0..255;
- float (``F``): ``round(255 * v)`` when every value lies in 0..1, else minimum..maximum stretched;
  NaN and infinities count as 0.

Other modes (grayscale, palette, RGBA, CMYK, ...) use PIL's conversion. A photo's EXIF orientation (how a phone
says the picture was held) is applied first, so training, the cache and predict see it upright.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps


def is_high_bit_depth(mode: str) -> bool:
    """Whether PIL holds this mode's pixels as more than 8 bits (16/32-bit integer or float)."""
    return mode in ("I", "F") or mode.startswith("I;16")


def to_rgb(image: Image.Image) -> Image.Image:
    """A new 8-bit RGB image, turned upright by its EXIF orientation; high-bit-depth and float images are
    scaled, not clipped."""
    image = upright(image)
    if not is_high_bit_depth(image.mode):
        return image.convert("RGB")
    return Image.fromarray(scale_to_uint8(np.asarray(image), image.mode), "L").convert("RGB")


def scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Pixel values of a high-bit-depth ``mode`` as uint8, by the rule in the module docstring."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        v = v / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        v = v * 255.0
    elif hi > lo:
        v = (v - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


EXIF_ORIENTATION = 0x0112


def upright(image: Image.Image) -> Image.Image:
    """``image`` rotated/flipped as its EXIF orientation tag says (PIL's ``ImageOps.exif_transpose``); the
    image itself when it has no such tag or the tag says it is upright already."""
    if image.getexif().get(EXIF_ORIENTATION, 1) in (1, None):
        return image
    return ImageOps.exif_transpose(image)
