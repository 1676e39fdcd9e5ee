"""The per-process data caches: keyed on what each step reads, so equal inputs share and different ones do not."""

from __future__ import annotations

import numpy as np
import yaml

from benchkit.data.decode import decode_split
from benchkit.data.prepare import decoded_split, prepare_dataset
from benchkit.experiment import plan
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
