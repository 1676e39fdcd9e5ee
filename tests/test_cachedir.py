"""`benchkit cache info|clear`: what the image and feature caches hold, and deleting it safely."""

import json

import numpy as np
import torch

from benchkit.cli import main
from benchkit.data.datasets import Split
from benchkit.data.formats.imagefolder import read_imagefolder
from benchkit.data.image_cache import ImageCache
from benchkit.training.feature_cache import _lookup, clear_memory
from conftest import IMAGEFOLDER_CLASSES, write_imagefolder


def _fill(tmp_path):
    """A cache with one image folder (12 images at 16 px) and one feature entry (5 x 4 floats)."""
    write_imagefolder(tmp_path / "data", per_class=2)
    dataset = read_imagefolder(tmp_path / "data", IMAGEFOLDER_CLASSES)
    root = tmp_path / "cache"
    train = ImageCache(root, 16).split_array(dataset.splits["train"], progress=False)
    clear_memory()
    _lookup("k" * 40, lambda: torch.arange(20, dtype=torch.float32).reshape(5, 4), root,
            {"backbone": "tiny_cnn", "size": 16, "split": "train", "images": 5})
    clear_memory()
    return dataset, root, len(train)


def _info(root, capsys) -> dict:
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(root), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_lists_each_entry_with_its_size_on_disk(tmp_path, capsys):
    _, root, n = _fill(tmp_path)
    usage = _info(root, capsys)
    (images,), (features,) = usage["images"], usage["features"]
    folder = root / "images" / images["folder"]
    assert images["size"] == 16 and images["images"] == n == 6
    assert images["bytes"] == (folder / "pixels.u8").stat().st_size + (folder / "index.json").stat().st_size
    assert (folder / "pixels.u8").stat().st_size == 6 * 3 * 16 * 16
    assert features["backbone"] == "tiny_cnn" and features["shape"] == [5, 4]
    assert features["bytes"] > 5 * 4 * 4
    assert usage["total_bytes"] == images["bytes"] + features["bytes"]
    assert main(["cache", "info", "--cache-dir", str(root)]) == 0
    assert "tiny_cnn 16px train" in capsys.readouterr().out


def test_clear_only_features_keeps_the_images_and_frees_what_info_said(tmp_path, capsys):
    _, root, _ = _fill(tmp_path)
    before = _info(root, capsys)
    assert main(["cache", "clear", "--only", "features", "--cache-dir", str(root)]) == 0
    freed_mb = before["features"][0]["bytes"] / 1e6
    assert f"{freed_mb:.1f} MB freed" in capsys.readouterr().out
    after = _info(root, capsys)
    assert after["features"] == [] and after["images"] == before["images"]


def test_cleared_images_are_decoded_again_with_the_same_pixels(tmp_path, capsys):
    dataset, root, _ = _fill(tmp_path)
    split: Split = dataset.splits["train"]
    first = np.asarray(ImageCache(root, 16).split_array(split, progress=False))
    assert main(["cache", "clear", "--cache-dir", str(root)]) == 0
    assert _info(root, capsys) == {"cache_dir": str(root), "images": [], "features": [], "total_bytes": 0}
    again = ImageCache(root, 16)
    assert np.array_equal(np.asarray(again.split_array(split, progress=False)), first)
    assert again.decoded == len(split)
