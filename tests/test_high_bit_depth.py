"""16-bit, 32-bit and float images are scaled to 8 bits, not clipped white, by every reader alike.

The values are computed by hand: 16-bit ``v`` becomes ``round(v / 257)``, float ``v`` in 0..1
becomes ``round(255 v)``, anything else is stretched from its own minimum..maximum.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchkit.data.image_hashes import hash_thumbnail
from benchkit.data.datasets import Split
from benchkit.data.image_cache import cached_split, decode_bytes
from benchkit.data.rgb import to_rgb

SIXTEEN_BIT = np.array([[0, 1000, 30000, 65535]] * 4, dtype=np.uint16)
EXPECTED = np.array([[0, 4, 117, 255]] * 4, dtype=np.uint8)  # 1000/257 = 3.89, 30000/257 = 116.7


def _save(tmp_path: Path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


@pytest.fixture
def png16(tmp_path) -> Path:
    path = _save(tmp_path, "deep.png", Image.fromarray(SIXTEEN_BIT))
    assert Image.open(path).mode == "I;16"
    return path


def _red(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    rgb = np.asarray(image)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


@pytest.mark.parametrize("name, image, expected", [
    ("i16.png", Image.fromarray(SIXTEEN_BIT), EXPECTED),
    ("i16b.tif", Image.fromarray(SIXTEEN_BIT.astype(">u2")), EXPECTED),
    ("i32.tif", Image.fromarray(SIXTEEN_BIT.astype(np.int32)), EXPECTED),
    ("i32wide.tif", Image.fromarray(np.array([[-100, 0, 100, 155]] * 4, dtype=np.int32)),
     np.array([[0, 100, 200, 255]] * 4, dtype=np.uint8)),  # stretched: (v + 100) * 255 / 255
    ("f01.tif", Image.fromarray(np.array([[0.0, 0.1, 0.5, 1.0]] * 4, dtype=np.float32)),
     np.array([[0, 26, 128, 255]] * 4, dtype=np.uint8)),  # 25.5 -> 26, 127.5 -> 128 (round half to even)
    ("fwide.tif", Image.fromarray(np.array([[2.0, 4.0, 6.0, 12.0]] * 4, dtype=np.float32)),
     np.array([[0, 51, 102, 255]] * 4, dtype=np.uint8)),  # (v - 2) * 25.5
])
def test_high_bit_depth_files_decode_to_the_hand_computed_8_bit_values(tmp_path, name, image, expected):
    path = _save(tmp_path, name, image)
    with Image.open(path) as opened:
        assert opened.mode == image.mode
        np.testing.assert_array_equal(_red(to_rgb(opened)), expected)


def test_the_dataset_reader_the_cache_the_audit_and_predict_agree(tmp_path, png16):
    split = Split("train", ["train/deep.png"], np.zeros(1, dtype=np.int64), [png16])
    np.testing.assert_array_equal(_red(split.load_image(0)), EXPECTED)
    for decoded in (decode_bytes(png16.read_bytes(), 4), np.asarray(cached_split(split, 4, tmp_path / "c"))[0]):
        assert decoded.shape == (3, 4, 4)
        np.testing.assert_array_equal(decoded[0], EXPECTED)
    eight_bit = Image.fromarray(EXPECTED, "L")
    thumb = hash_thumbnail(Image.open(png16))
    np.testing.assert_array_equal(thumb, hash_thumbnail(eight_bit))
    assert thumb.min() == 0 and thumb.max() == 255 and len(np.unique(thumb)) == 4


def test_predict_reads_a_16_bit_file_as_its_scaled_pixels(png16):
    from benchkit.inference.predict import _open_image
    np.testing.assert_array_equal(_red(_open_image(png16)), EXPECTED)


def test_plain_modes_still_use_pils_conversion():
    rgba = Image.fromarray(np.full((2, 2, 4), (10, 20, 30, 0), dtype=np.uint8), "RGBA")
    assert np.asarray(to_rgb(rgba)).tolist() == [[[10, 20, 30]] * 2] * 2
    gray = Image.fromarray(np.array([[7, 200]], dtype=np.uint8), "L")
    assert _red(to_rgb(gray)).tolist() == [[7, 200]]
