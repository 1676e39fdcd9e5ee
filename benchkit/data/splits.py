"""Subject-disjoint splitting: no person (group) may sit on both sides of an evaluation.

The official hair-loss split leaks: every valid and test subject also appears in train, photographed
from another view, so its scores measure "same person, new angle". The strategies here pool the
official splits and cut them again by subject:

- ``official``: the dataset as given.
- ``group_kfold``: :class:`sklearn.model_selection.StratifiedGroupKFold` over the pooled images; fold
  ``f`` is the test part of split ``group_kfold-{f}``, and a further group-wise cut of the remaining
  folds (about ``valid_fraction`` of the pool) is its validation part.
- ``group_holdout``: one seeded train/valid/test cut of the pool by ``fractions``, group-wise.

Subjects come from ``Split.groups`` when every split has them (e.g. synthetic data), else from the
file names: a regex with a named group ``subject`` (default :data:`DEFAULT_SUBJECT_REGEX`), combined with
the label because hair-loss numbers restart in every level, so (level, number) identifies one head.
"""

from __future__ import annotations

import re
import warnings
from pathlib import PurePosixPath
from typing import Sequence

import numpy as np

from benchkit.config.schema import DEFAULT_SUBJECT_REGEX
from benchkit.data.datasets import Dataset, Split
from benchkit.errors import ConfigError, DataError, format_listing
STRATEGIES = ("official", "group_kfold", "group_holdout")
_HOLDOUT_CHUNKS = 20


def compile_subject_regex(regex: str | re.Pattern) -> re.Pattern:
    """The compiled subject regex; ConfigError when it is invalid or lacks the group ``subject``."""
    if isinstance(regex, re.Pattern):
        pattern = regex
    else:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"subject regex {regex!r} is not a valid regular expression: {exc}") from None
    if "subject" not in pattern.groupindex:
        raise ConfigError(f"subject regex {pattern.pattern!r} needs a named group (?P<subject>...)")
    return pattern


def subject_key(file_id: str, label, pattern: re.Pattern, with_label: bool = True) -> str | None:
    """The subject of one image from its file name (not its folders), or None when the regex fails."""
    match = pattern.search(PurePosixPath(str(file_id)).name)
    if match is None or match.group("subject") is None:
        return None
    subject = match.group("subject")
    return f"{label}:{subject}" if with_label else subject


def subject_groups(ids: Sequence[str], labels: Sequence, regex: str | re.Pattern = DEFAULT_SUBJECT_REGEX,
                   with_label: bool = True) -> list[str]:
    """One subject key per image; DataError naming the files the regex does not match."""
    pattern = compile_subject_regex(regex)
    keys = [subject_key(i, lab, pattern, with_label) for i, lab in zip(ids, labels)]
    unmatched = [i for i, key in zip(ids, keys) if key is None]
    if unmatched:
        raise DataError(f"subject regex {pattern.pattern!r} does not match {len(unmatched)} of {len(keys)} "
                        f"file names (set data.subject_regex):\n" + format_listing(unmatched))
    return keys


def group_kfold(labels: Sequence[int], groups: Sequence[str], k: int = 5,
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs; no group in two test folds, levels stratified as groups allow."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if k < 2:
        raise ConfigError(f"group k-fold needs k >= 2, got {k}")
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise DataError(f"group k-fold with k={k} needs at least {k} subjects, found {n_groups}")
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = [(np.sort(tr), np.sort(te))
                 for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]
    if any(len(te) == 0 for _, te in folds):
        raise DataError(f"group k-fold with k={k} left a fold empty ({n_groups} subjects); use fewer folds")
    return folds


def group_holdout(labels: Sequence[int], groups: Sequence[str],
                  fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of ``train``/``valid``/``test`` in about ``fractions`` of the images, no group in two parts.

    The pool is cut into up to 20 stratified group folds that are handed out to the parts by
    fraction (largest remainder); a zero fraction gives an empty part.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    fractions = _check_fractions(fractions)
    n_groups = len(np.unique(groups))
    wanted = sum(f > 0 for f in fractions)
    if n_groups < wanted:
        raise DataError(f"a group holdout into {wanted} parts needs at least {wanted} subjects, "
                        f"found {n_groups}")
    n_chunks = min(_HOLDOUT_CHUNKS, n_groups)
    counts = _allocate(fractions, n_chunks)
    chunks = [te for _, te in group_kfold(labels, groups, n_chunks, seed)]
    parts, start = {}, 0
    for name, count in zip(("train", "valid", "test"), counts):
        taken = chunks[start:start + count]
        parts[name] = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
        start += count
    return parts


def make_splits(dataset: Dataset, strategy: str = "official", *, k: int = 5,
                fold: int | Sequence[int] | None = None, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                seed: int = 0, subject_regex: str = DEFAULT_SUBJECT_REGEX, subject_with_label: bool = True,
                valid_fraction: float = 0.15) -> list[tuple[str, Dataset]]:
    """``(split label, dataset with train/valid/test)`` per evaluation the strategy defines.

    Labels: ``official``; ``group_kfold-{f}`` for each requested fold (all when ``fold`` is None);
    ``group_holdout``. Grouped strategies pool every official split first, since the official
    split itself leaks subjects.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown split strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == "official":
        return [("official", dataset)]
    pooled = _pool(dataset, subject_regex, subject_with_label)
    labels, groups = pooled.labels, np.asarray(pooled.groups)
    if strategy == "group_holdout":
        parts = group_holdout(labels, groups, fractions, seed)
        return [("group_holdout", _rebuild(dataset, pooled, parts))]
    folds = group_kfold(labels, groups, k, seed)
    chosen = range(k) if fold is None else ([fold] if isinstance(fold, (int, np.integer)) else list(fold))
    bad = [f for f in chosen if not 0 <= f < k]
    if bad:
        raise ConfigError(f"fold {bad} outside 0..{k - 1}")
    inner_fraction = min(0.5, valid_fraction / (1.0 - 1.0 / k))
    out = []
    for f in chosen:
        rest, test = folds[f]
        inner = group_holdout(labels[rest], groups[rest], (1.0 - inner_fraction, inner_fraction, 0.0),
                              seed + f)
        parts = {"train": rest[inner["train"]], "valid": rest[inner["valid"]], "test": test}
        out.append((f"group_kfold-{f}", _rebuild(dataset, pooled, parts)))
    return out


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or values[0] <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers (train, valid, test) "
                          f"summing to 1 with train > 0, got {list(fractions)}")
    return values


def _allocate(fractions: tuple[float, ...], total: int) -> list[int]:
    raw = [f * total for f in fractions]
    counts = [max(int(np.floor(r)), 1 if f > 0 else 0) for r, f in zip(raw, fractions)]
    while sum(counts) < total:
        j = max((i for i, f in enumerate(fractions) if f > 0), key=lambda i: raw[i] - counts[i])
        counts[j] += 1
    while sum(counts) > total:
        j = max((i for i, c in enumerate(counts) if c > 1), key=lambda i: counts[i] - raw[i])
        counts[j] -= 1
    return counts


class _PooledRender:
    """Picklable loader of pooled images that are drawn, not read: (split render, index) per row."""

    def __init__(self, renders, rows):
        self.renders, self.rows = renders, rows

    def __call__(self, index: int):
        which, i = self.rows[index]
        return self.renders[which](i)


def _pool(dataset: Dataset, regex: str, with_label: bool) -> Split:
    splits = [s for s in dataset.splits.values() if len(s)]
    if not splits:
        raise DataError(f"dataset {dataset.root or dataset.name} has no images to split")
    ids = [i for s in splits for i in s.ids]
    labels = np.concatenate([s.labels for s in splits]).astype(np.int64)
    if all(s.groups is not None for s in splits):
        groups = [g for s in splits for g in s.groups]
    else:
        names = [dataset.classes[int(v)] if 0 <= int(v) < len(dataset.classes) else int(v) for v in labels]
        groups = subject_groups(ids, names, regex, with_label)
    paths = render = None
    if all(s.paths is not None for s in splits):
        paths = [p for s in splits for p in s.paths]
    else:
        render = _PooledRender([s.render if s.paths is None else _PathLoader(s) for s in splits],
                               [(w, i) for w, s in enumerate(splits) for i in range(len(s))])
    return Split("pool", ids, labels, paths, render, groups)


class _PathLoader:
    """Loader of a file-backed split, for pools that mix drawn and file-backed splits."""

    def __init__(self, split: Split):
        self.split = split

    def __call__(self, index: int):
        return self.split.load_image(index)


def _take(pooled: Split, indices: np.ndarray, name: str) -> Split:
    idx = [int(i) for i in indices]
    render = None
    if pooled.render is not None:
        render = _PooledRender(pooled.render.renders, [pooled.render.rows[i] for i in idx])
    return Split(name, [pooled.ids[i] for i in idx], pooled.labels[idx].copy(),
                 [pooled.paths[i] for i in idx] if pooled.paths is not None else None,
                 render, [pooled.groups[i] for i in idx])


def _rebuild(dataset: Dataset, pooled: Split, parts: dict[str, np.ndarray]) -> Dataset:
    splits = {name: _take(pooled, idx, name) for name, idx in parts.items() if len(idx)}
    return Dataset(dataset.name, list(dataset.classes), splits, dataset.root)
