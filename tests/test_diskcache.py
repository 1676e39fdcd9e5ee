"""The disk cache of decoded images: exact pixels, per-file invalidation, sizes, locking, wiring."""

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import benchkit.data.image_cache as diskcache
from benchkit.cli import main
from benchkit.data.formats.imagefolder import read_imagefolder
from benchkit.data.image_cache import ImageCache, MappedRows, cached_split, resolve_cache_dir
from benchkit.data.decode import decode_image, decode_split
from conftest import IMAGEFOLDER_CLASSES as CLASSES, TINY_PLUGIN, write_imagefolder

@pytest.fixture
def dataset(tmp_path):
    write_imagefolder(tmp_path / "data")
    return read_imagefolder(tmp_path / "data", CLASSES)


@pytest.fixture
def count_decodes(monkeypatch):
    """Count every decode the cache performs (wraps the decode it calls)."""
    calls = []
    real = diskcache.decode_image

    def counting(image, size):
        calls.append(size)
        return real(image, size)

    monkeypatch.setattr(diskcache, "decode_image", counting)
    return calls


def test_cached_pixels_equal_a_direct_decode(dataset, tmp_path):
    split = dataset.splits["train"]
    rows = ImageCache(tmp_path / "cache", 16).split_array(split, progress=False)
    assert isinstance(rows, MappedRows) and rows.shape == (len(split), 3, 16, 16) and rows.dtype == np.uint8
    direct = decode_split(split, 16)
    np.testing.assert_array_equal(np.asarray(rows), direct)
    for i in range(len(split)):
        np.testing.assert_array_equal(rows[i], decode_image(split.load_image(i), 16))
    np.testing.assert_array_equal(rows[2:5], direct[2:5])
    np.testing.assert_array_equal(rows[np.array([4, 0])], direct[[4, 0]])


def test_a_second_process_view_decodes_nothing(dataset, tmp_path, count_decodes):
    split = dataset.splits["train"]
    first = ImageCache(tmp_path / "cache", 16).split_array(split, progress=False)
    assert len(count_decodes) == len(split)
    again = ImageCache(tmp_path / "cache", 16)
    rows = again.split_array(split, progress=False)
    assert again.decoded == 0 and len(count_decodes) == len(split)
    np.testing.assert_array_equal(np.asarray(rows), np.asarray(first))
    assert rows.fingerprint == first.fingerprint


def test_a_changed_file_invalidates_exactly_its_entry(dataset, tmp_path, count_decodes):
    split = dataset.splits["train"]
    cache = ImageCache(tmp_path / "cache", 16)
    first = cache.split_array(split, progress=False)
    before = np.asarray(first).copy()
    count_decodes.clear()
    changed = 4
    Image.fromarray(np.full((30, 30, 3), 7, dtype=np.uint8)).save(split.paths[changed])
    after = cache.split_array(split, progress=False)
    assert len(count_decodes) == 1
    np.testing.assert_array_equal(after[changed], decode_image(split.load_image(changed), 16))
    assert not np.array_equal(after[changed], before[changed])
    others = [i for i in range(len(split)) if i != changed]
    np.testing.assert_array_equal(np.asarray(after)[others], before[others])
    assert after.fingerprint != first.fingerprint


def test_a_new_size_builds_a_new_entry_and_keeps_the_old(dataset, tmp_path, count_decodes):
    split = dataset.splits["valid"]
    small = cached_split(split, 16, tmp_path / "cache", progress=False)
    large = cached_split(split, 24, tmp_path / "cache", progress=False)
    assert count_decodes == [16] * len(split) + [24] * len(split)
    np.testing.assert_array_equal(np.asarray(large), decode_split(split, 24))
    count_decodes.clear()
    np.testing.assert_array_equal(np.asarray(cached_split(split, 16, tmp_path / "cache", progress=False)),
                                  np.asarray(small))
    assert count_decodes == []
    folders = sorted(p.name for p in (tmp_path / "cache" / "images").iterdir())
    assert folders == [f"16px-{diskcache.RESIZE_SETTINGS}", f"24px-{diskcache.RESIZE_SETTINGS}"]


def test_identical_files_share_one_row(tmp_path, count_decodes):
    root = tmp_path / "data"
    for name in CLASSES:
        (root / "train" / name).mkdir(parents=True)
        Image.fromarray(np.full((9, 9, 3), 100, dtype=np.uint8)).save(root / "train" / name / "same.png")
    split = read_imagefolder(root, CLASSES).splits["train"]
    rows = cached_split(split, 8, tmp_path / "cache", progress=False)
    assert len(count_decodes) == 1 and len(rows) == 3
    index = json.loads((tmp_path / "cache" / "images" / f"8px-{diskcache.RESIZE_SETTINGS}" / "index.json")
                       .read_text())
    assert index["rows"] == 1 and len(index["entries"]) == 1


def test_bytes_after_the_committed_rows_are_discarded(dataset, tmp_path):
    train, valid = dataset.splits["train"], dataset.splits["valid"]
    cache = ImageCache(tmp_path / "cache", 16)
    cache.split_array(train, progress=False)
    with open(cache.pixels_path, "ab") as fh:  # an append that crashed before its index was written
        fh.write(b"\x01" * (cache.row_bytes + 5))
    rows = cache.split_array(valid, progress=False)
    np.testing.assert_array_equal(np.asarray(rows), decode_split(valid, 16))
    assert cache.pixels_path.stat().st_size == cache.read_index()["rows"] * cache.row_bytes


def _build(root: str, cache_dir: str, out) -> None:
    split = read_imagefolder(Path(root), CLASSES).splits["train"]
    cache = ImageCache(cache_dir, 16)
    rows = cache.split_array(split, progress=False)
    out.put((cache.decoded, np.asarray(rows).tobytes()))


def test_concurrent_processes_build_one_consistent_cache(dataset, tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build, args=(str(tmp_path / "data"), str(tmp_path / "cache"), queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    split = dataset.splits["train"]
    assert sum(decoded for decoded, _ in results) == len(split)
    expected = decode_split(split, 16).tobytes()
    assert all(pixels == expected for _, pixels in results)
    assert ImageCache(tmp_path / "cache", 16).read_index()["rows"] == len(split)


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(diskcache.CACHE_ENV, raising=False)
    assert resolve_cache_dir() == Path.home() / ".cache" / "benchkit"
    monkeypatch.setenv(diskcache.CACHE_ENV, str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir("rel", base_dir=tmp_path) == tmp_path / "rel"
    assert resolve_cache_dir(tmp_path / "abs") == tmp_path / "abs"


def test_a_run_on_image_files_feeds_training_from_the_disk_cache(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(diskcache.CACHE_ENV, str(tmp_path / "unused"))
    raw = {"name": "files", "plugins": [str(TINY_PLUGIN)],
           "data": {"format": "imagefolder", "root": str(tmp_path / "data"), "classes": CLASSES,
                    "image_size": 16, "cache_dir": str(tmp_path / "cache")},
           "models": [{"backbone": "tiny_cnn", "head": "regression"}],
           "train": {"epochs": 1, "batch_size": 4, "augmentation": "none", "ema": {"enabled": False}},
           "evaluation": {"bootstrap": {"n_resamples": 0}, "plots": False}}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    index = ImageCache(tmp_path / "cache", 16).read_index()
    assert index["rows"] == len(dataset.splits["train"]) + len(dataset.splits["valid"])
    assert not (tmp_path / "unused").exists()


def test_the_engine_reads_cached_rows_a_batch_at_a_time_in_shuffled_order(dataset, tmp_path):
    from torch.utils.data import DataLoader

    from benchkit.training.batches import batch_loader
    from benchkit.data.decode import ImageArrayDataset

    split = dataset.splits["train"]
    data = ImageArrayDataset(cached_split(split, 16, tmp_path / "cache", progress=False), split.labels)
    # 9 images in batches of 3: no lone last image for the training loader to merge
    gathered = list(batch_loader(data, 3, shuffle=True, generator=torch.Generator().manual_seed(5)))
    per_item = list(DataLoader(data, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(5)))
    assert len(gathered) == len(per_item) == 3
    for (images, levels), (expected_images, expected_levels) in zip(gathered, per_item):
        assert images.dtype == torch.uint8 and levels.dtype == torch.int64
        assert torch.equal(images, expected_images) and torch.equal(levels, expected_levels)
