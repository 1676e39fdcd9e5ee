"""The per-process data caches: keyed on what each step reads, so equal inputs share and different ones do not."""

from __future__ import annotations

import numpy as np
import yaml

from benchkit.data.decode import decode_split
from benchkit.data.prepare import decoded_split, prepare_dataset
from benchkit.execution.plan import plan
from conftest import small_experiment


def _spec(tmp_path, name: str, **data_changes):
    """The single run of a small synthetic experiment whose ``data`` section has ``data_changes``."""
    folder = tmp_path / name
    folder.mkdir()
    data = yaml.safe_load(small_experiment(folder).read_text())["data"]
    for key, value in data_changes.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    _, runs = plan(small_experiment(folder, data=data))
    return runs[0]


def test_decoded_images_follow_the_synthetic_image_size(tmp_path):
    """Runs differing only in the synthetic images' drawn size get their own images, not the first run's."""
    for drawn in (32, 96):
        spec = _spec(tmp_path, f"drawn{drawn}", synthetic={"image_size": drawn})
        dataset = prepare_dataset(spec)
        afresh = decode_split(dataset.splits["train"], 32)
        np.testing.assert_array_equal(decoded_split(spec, dataset, "train", 32), afresh)


def test_the_dataset_is_read_once_for_runs_differing_in_split_or_input_size(tmp_path, monkeypatch):
    """A grid over data.split or data.image_size reads the images once; each split is what a fresh read gives."""
    import benchkit.data.synthetic as synthetic
    from benchkit.data import prepare
    reads = []
    real = synthetic.make_synthetic_dataset
    monkeypatch.setattr(synthetic, "make_synthetic_dataset", lambda *a, **k: reads.append(a) or real(*a, **k))
    prepare._read.memo.clear()
    prepare._prepared.memo.clear()
    specs = [_spec(tmp_path, "base"), _spec(tmp_path, "size", image_size=48, cache=False, feature_cache=False),
             _spec(tmp_path, "holdout", split="group_holdout")]
    prepared = [prepare_dataset(spec) for spec in specs]
    assert len(reads) == 1 and prepared[1] is prepared[0]
    assert len(prepare._prepared.memo) == 2  # one prepared dataset per split, shared across input sizes
    prepare._read.memo.clear()
    prepare._prepared.memo.clear()
    for spec, dataset in zip(specs, prepared):
        fresh = prepare_dataset(spec)
        prepare._prepared.memo.clear()
        for name, split in fresh.splits.items():
            assert list(dataset.splits[name].ids) == list(split.ids)
            np.testing.assert_array_equal(dataset.splits[name].labels, split.labels)
