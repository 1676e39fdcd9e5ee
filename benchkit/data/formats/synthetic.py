"""``synthetic``: the drawn 'scalp' images of :mod:`benchkit.data.synthetic`, sized by ``data.synthetic``."""

from __future__ import annotations

from pathlib import PurePosixPath

from benchkit.data.labels import LabelTable
from benchkit.data.reading import DatasetFormat
from benchkit.data import synthetic as drawing
from benchkit.registry import register_dataset_format


@register_dataset_format("synthetic")
class Synthetic(DatasetFormat):
    """Procedurally drawn ordinal images: no files, no root; two views per subject."""

    needs_root = False
    drawn = True

    def read(self, table: LabelTable) -> None:
        syn = table.data.synthetic
        drawn = drawing.make_synthetic_dataset(syn.num_classes, {"train": syn.train, "valid": syn.valid,
                                                                 "test": syn.test}, syn.image_size, syn.seed)
        table.classes, table.classes_given, table.name = drawn.classes, True, drawn.name
        for split in drawn.splits.values():
            for index, (image_id, level) in enumerate(zip(split.ids, split.labels.tolist())):
                table.add_array(split.name, split.render, index, level, name=PurePosixPath(image_id).name,
                                subject=split.groups[index])
