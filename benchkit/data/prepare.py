"""A run's data, ready to train on: the dataset read, split, sliced and decoded once per process.

``prepare_dataset(spec)`` reads the dataset the run's ``data`` section names, applies the
subject-disjoint split and the optional stratified slice, and checks that every split's classes
occur in train. The input check of an experiment and the run itself ask for the same prepared
dataset, which is built once per process; ``decoded_split`` decodes each split once per size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchkit.config.schema import DataConfig
from benchkit.data.datasets import SPLITS, Dataset, Split
from benchkit.data.decode import decode_split
from benchkit.data.image_cache import cached_split, resolve_cache_dir
from benchkit.data.reading import read_dataset, resolve_data_root
from benchkit.errors import DataError
from benchkit.memo import Memo, memoized


def data_source(data: DataConfig, base_dir: Path = Path(".")) -> DataConfig:
    """``data`` reduced to what reading the dataset uses: format, resolved root, classes, options, synthetic.

    Its JSON identifies the images (the synthetic ones too, whose name, root and ids ignore their size).
    """
    return DataConfig(format=data.format, root=resolve_data_root(data.root, base_dir), classes=data.classes,
                      options=data.options, synthetic=data.synthetic)


def load_dataset(data: DataConfig, base_dir: Path = Path(".")) -> Dataset:
    """Read the dataset a data config names through its format (cached per process on its :func:`data_source`)."""
    return _read(data_source(data, base_dir).model_dump_json())


@memoized("datasets", maxsize=4)
def _read(source_json: str) -> Dataset:
    return read_dataset(DataConfig.model_validate_json(source_json))


#: The ``data`` keys the split and the slice read.
_SPLITTING = ("split", "folds", "holdout_fractions", "split_seed", "subject_regex", "subject_with_label",
              "max_per_split")


def prepare_dataset(spec) -> Dataset:
    """The run's train/valid/test: official or subject-disjoint split, then the optional slice.

    ``spec`` is a run (its ``data``, ``fold`` and ``base_dir``); the result is built once per process
    for each data source, split and slice (input size and caching settings do not change it).
    """
    splitting = {name: getattr(spec.data, name) for name in _SPLITTING}
    data = data_source(spec.data, spec.base_dir).model_copy(update=splitting)
    return _prepared(data.model_dump_json(), spec.fold)


@memoized("prepared-datasets", maxsize=8)
def _prepared(data_json: str, fold: int | None) -> Dataset:
    data = DataConfig.model_validate_json(data_json)
    dataset = load_dataset(data)
    unsplit = {name: len(split) for name, split in dataset.splits.items() if name not in SPLITS}
    if unsplit and data.split == "official":
        raise DataError(f"dataset {dataset.root or dataset.name}: its images are not split into "
                        f"{', '.join(SPLITS)} ({unsplit}); choose data.split: group_holdout or group_kfold")
    if data.split != "official":
        from benchkit.data.splits import make_splits
        chosen = make_splits(dataset, data.split, k=data.folds, fold=fold,
                             fractions=data.holdout_fractions, seed=data.split_seed,
                             subject_regex=data.subject_regex, subject_with_label=data.subject_with_label)
        dataset = chosen[0][1]
    if data.max_per_split:
        dataset = Dataset(dataset.name, dataset.classes,
                          {n: _stratified_slice(s, data.max_per_split, data.split_seed)
                           for n, s in dataset.splits.items()}, dataset.root)
    for needed in ("train", "valid"):
        if needed not in dataset.splits or len(dataset.splits[needed]) == 0:
            raise DataError(f"dataset {dataset.root or dataset.name}: split {needed!r} is missing or empty")
    if len(dataset.splits["train"]) == 1:
        raise DataError(f"dataset {dataset.root or dataset.name}: split 'train' has a single image; training "
                        f"needs at least 2 (BatchNorm cannot normalise one)")
    _check_label_coverage(dataset)
    return dataset


def _stratified_slice(split: Split, limit: int, seed: int) -> Split:
    if len(split) <= limit:
        return split
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(split))
    by_class = [order[split.labels[order] == k] for k in np.unique(split.labels)]
    picked = [idx for group in _round_robin(by_class) for idx in group][:limit]
    return split.subset(sorted(picked))


def _round_robin(groups):
    """Interleave index arrays class by class: [[a0], [b0], [a1], [b1], ...]."""
    longest = max(len(g) for g in groups)
    for i in range(longest):
        yield [g[i] for g in groups if i < len(g)]


def _check_label_coverage(dataset: Dataset) -> None:
    train_levels = set(dataset.splits["train"].labels.tolist())
    for name, split in dataset.splits.items():
        missing = sorted(set(split.labels.tolist()) - train_levels)
        if missing:
            names = [dataset.classes[k] for k in missing]
            raise DataError(f"classes {names} occur in split {name!r} but not in train: a model "
                            f"cannot learn them (check the labels or the split)")


_DECODED = Memo("decoded-splits", maxsize=12)


def decoded_split(spec, dataset: Dataset, split_name: str, size: int) -> np.ndarray:
    """The split's images as uint8 arrays at ``size``, decoded once per process.

    Image files go through the disk cache (memory-mapped, decoded once per file content and size)
    when ``data.cache`` is on; synthetic images are drawn in memory.
    """
    split = dataset.splits[split_name]
    key = (data_source(spec.data, spec.base_dir).model_dump_json(), split_name, tuple(split.ids), size,
           spec.data.cache)
    if spec.data.cache and split.paths is not None:
        return _DECODED.get(key, lambda: cached_split(split, size, cache_dir(spec)))
    return _DECODED.get(key, lambda: decode_split(split, size))


def cache_dir(spec) -> Path:
    """Where the run's decoded images and frozen-backbone features are cached."""
    return resolve_cache_dir(spec.data.cache_dir, spec.base_dir)
