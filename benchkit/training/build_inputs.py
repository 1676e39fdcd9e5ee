"""A run's build inputs, resolved before it runs: the class names, the input size and the loss's class weights.

They come from the data (classes, train levels), the backbone (its preferred input size) and the training
recipe (``train.class_weights``), and are recorded in the run's config (``build``), so the run, its dry run,
its input check and a later ``load_run`` build the same model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from benchkit.config.schema import BuildInputs
from benchkit.errors import ConfigError
from benchkit.models.grader import backbone_input_size


def resolve_build(spec, classes: Sequence[str], train_labels=None):
    """``spec`` with its :class:`~benchkit.config.schema.BuildInputs` filled: the class names, the input
    size (``data.image_size``, else the backbone's) and the class weights (``balanced`` needs the
    train levels; without them the weights stay unresolved, as for a dry run)."""
    weights = class_weights(spec.train.class_weights, len(classes), train_labels)
    size = spec.data.image_size or backbone_input_size(spec.model.backbone)
    build = BuildInputs(classes=list(classes), input_size=size, class_weights=weights)
    return spec.model_copy(update={"build": build})


def class_weights(choice, num_classes: int, train_labels=None) -> list[float] | None:
    """The training loss's weight per level: ``none``, ``balanced`` (``n / (K * count_k)`` from the train
    levels, 0 for a level absent from train) or a list of K numbers."""
    if choice == "balanced" and train_labels is not None:
        counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
        return np.where(counts > 0, len(train_labels) / (num_classes * np.maximum(counts, 1)), 0.0).tolist()
    if isinstance(choice, list):
        if len(choice) != num_classes:
            raise ConfigError(f"train.class_weights has {len(choice)} values for {num_classes} classes")
        return [float(w) for w in choice]
    return None
