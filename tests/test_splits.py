"""Subject keys from file names, grouped k-fold and holdout, and the datasets make_splits builds."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

from benchkit.data.formats.roboflow import read_roboflow_csv
from benchkit.errors import ConfigError, DataError
from benchkit.data.splits import group_holdout, group_kfold, make_splits, subject_groups
from benchkit.data.synthetic import make_synthetic_dataset


def _grouped_labels(n_groups: int = 60, seed: int = 0):
    """Groups of 1-6 images; every group has one label (as a person has one baldness level)."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for g in range(n_groups):
        level = g % 4
        for _ in range(int(rng.integers(1, 7))):
            labels.append(level)
            groups.append(f"s{g}")
    return np.array(labels), np.array(groups)


def test_subject_groups_combine_number_and_label_and_tolerate_missing_dash():
    ids = ["train/14-Top-Down_jpg.rf.ab.jpg", "valid/31Front_jpg.rf.cd.jpg", "test/14-Left_jpg.rf.ef.jpg"]
    keys = subject_groups(ids, ["LEVEL_4", "LEVEL_3", "LEVEL_2"])
    assert keys == ["LEVEL_4:14", "LEVEL_3:31", "LEVEL_2:14"]
    assert subject_groups(ids, [4, 3, 2], with_label=False) == ["14", "31", "14"]


def test_subject_groups_name_the_files_the_regex_misses():
    with pytest.raises(DataError, match="(?s)does not match 1 of 2.*train/Front_x.jpg"):
        subject_groups(["train/1-Back.jpg", "train/Front_x.jpg"], [0, 0])


def test_subject_regex_needs_a_named_subject_group():
    with pytest.raises(ConfigError, match="named group"):
        subject_groups(["train/1-Back.jpg"], [0], regex=r"^(\d+)")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        subject_groups(["train/1-Back.jpg"], [0], regex=r"^(?P<subject>\d+")


def test_group_kfold_keeps_groups_whole_and_stratifies():
    labels, groups = _grouped_labels()
    folds = group_kfold(labels, groups, k=5, seed=3)
    assert len(folds) == 5
    seen = np.concatenate([test for _, test in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))
    overall = np.bincount(labels, minlength=4) / len(labels)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(set(train) | set(test)) == len(labels)
        share = np.bincount(labels[test], minlength=4) / len(test)
        assert np.abs(share - overall).max() < 0.15
    owner = {}
    for f, (_, test) in enumerate(folds):
        for g in set(groups[test]):
            assert owner.setdefault(g, f) == f


def test_group_kfold_is_seeded_and_needs_enough_groups():
    labels, groups = _grouped_labels()
    a = group_kfold(labels, groups, 4, seed=1)
    b = group_kfold(labels, groups, 4, seed=1)
    c = group_kfold(labels, groups, 4, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))
    with pytest.raises(DataError, match="at least 5 subjects"):
        group_kfold([0, 1, 0, 1], ["a", "a", "b", "c"], k=5)


def test_group_holdout_fractions_and_disjoint_groups():
    labels, groups = _grouped_labels(100)
    parts = group_holdout(labels, groups, (0.7, 0.15, 0.15), seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(labels)))
    sets = {name: set(groups[idx]) for name, idx in parts.items()}
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    for name, wanted in zip(("train", "valid", "test"), (0.7, 0.15, 0.15)):
        assert abs(len(parts[name]) / len(labels) - wanted) < 0.06
    assert set(labels[parts["test"]]) == {0, 1, 2, 3}


def test_group_holdout_zero_fraction_and_bad_fractions():
    labels, groups = _grouped_labels(30)
    parts = group_holdout(labels, groups, (0.8, 0.2, 0.0), seed=0)
    assert len(parts["test"]) == 0 and len(parts["valid"]) > 0
    with pytest.raises(ConfigError, match="summing to 1"):
        group_holdout(labels, groups, (0.8, 0.3, 0.1))
    with pytest.raises(DataError, match="at least 3 subjects"):
        group_holdout([0, 1], ["a", "b"], (0.5, 0.25, 0.25))


def test_make_splits_official_is_the_dataset_itself():
    ds = make_synthetic_dataset(4, {"train": 16, "valid": 8, "test": 8}, 16)
    assert make_splits(ds, "official") == [("official", ds)]
    with pytest.raises(ConfigError, match="unknown split strategy"):
        make_splits(ds, "random")


def test_make_splits_group_kfold_pools_every_split_and_keeps_subjects_apart():
    ds = make_synthetic_dataset(4, {"train": 60, "valid": 20, "test": 20}, 16)
    pooled_ids = {i for s in ds.splits.values() for i in s.ids}
    runs = make_splits(ds, "group_kfold", k=5, seed=0)
    assert [label for label, _ in runs] == [f"group_kfold-{f}" for f in range(5)]
    tested = []
    for _, fold_ds in runs:
        parts = fold_ds.splits
        assert set(parts) == {"train", "valid", "test"}
        assert {i for s in parts.values() for i in s.ids} == pooled_ids
        groups = {n: set(s.groups) for n, s in parts.items()}
        assert not groups["train"] & groups["valid"] and not groups["train"] & groups["test"]
        assert not groups["valid"] & groups["test"]
        assert 0.05 < len(parts["valid"]) / len(pooled_ids) < 0.3
        tested += parts["test"].ids
    assert sorted(tested) == sorted(pooled_ids)
    one = make_splits(ds, "group_kfold", k=5, fold=2, seed=0)
    assert [label for label, _ in one] == ["group_kfold-2"]
    assert one[0][1].splits["test"].ids == runs[2][1].splits["test"].ids
    test_split = one[0][1].splits["test"]
    assert test_split.load_image(0).size == (16, 16)
    assert pickle.loads(pickle.dumps(test_split)).load_image(1).size == (16, 16)
    with pytest.raises(ConfigError, match="outside 0..4"):
        make_splits(ds, "group_kfold", k=5, fold=7)


def test_make_splits_group_holdout_on_labelled_images():
    ds = make_synthetic_dataset(3, {"train": 60, "valid": 30, "test": 30}, 16)
    (label, held), = make_splits(ds, "group_holdout", fractions=(0.6, 0.2, 0.2), seed=1)
    assert label == "group_holdout"
    sizes = {n: len(s) for n, s in held.splits.items()}
    assert sum(sizes.values()) == 120 and abs(sizes["train"] - 72) <= 10
    row = held.splits["valid"]
    original = {i: (s, k) for s in ds.splits.values() for k, i in enumerate(s.ids)}
    split, k = original[row.ids[0]]
    assert row.labels[0] == split.labels[k]
    assert np.array_equal(np.asarray(row.load_image(0)), np.asarray(split.load_image(k)))


def test_grouped_folds_of_the_real_data_share_no_subject(hair_loss_root):
    ds = read_roboflow_csv(hair_loss_root, check_images=False)
    runs = make_splits(ds, "group_kfold", k=5, seed=0)
    all_subjects = set()
    for label, fold_ds in runs:
        parts = fold_ds.splits
        assert sum(len(s) for s in parts.values()) == 1494
        subjects = {n: set(s.groups) for n, s in parts.items()}
        assert not subjects["train"] & subjects["test"], label
        assert not subjects["train"] & subjects["valid"], label
        assert not subjects["valid"] & subjects["test"], label
        all_subjects |= subjects["test"]
        levels = Counter(parts["test"].labels.tolist())
        assert len(levels) == 6, label
    assert len(all_subjects) == 133
    assert "LEVEL_3:31" in all_subjects or any(s.endswith(":31") for s in all_subjects)
