"""What the engine trains on: the decoded images of every split, or the frozen backbone's cached features.

:func:`training_sets` decodes each split at the run's input size and, when the feature cache applies
(enabled, no augmentation, backbone fully frozen), swaps the images for backbone features computed
once: the engine then trains the head alone (``GraderModel(Identity, head)``) with a pass-through
preprocessor, and :meth:`TrainingSets.full_model` puts the frozen backbone back under the trained head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from benchkit.data.decode import ImageArrayDataset
from benchkit.models.grader import GraderModel
from benchkit.training.feature_cache import (FeaturePassThrough, feature_cache_applies, feature_sets, head_only,
                                             with_backbone)
from benchkit.training.runtime import Runtime
from benchkit.training.transforms import BatchPreprocessor, build_augmentation


@dataclass
class TrainingSets:
    """The engine's inputs: ``sets`` (images or features per split), the ``images`` per split, the model
    and preprocessor the engine trains, and the run's full ``model`` and image ``preprocessor``."""

    sets: dict
    images: dict
    model: GraderModel
    preprocessor: BatchPreprocessor
    trained: GraderModel
    engine_preprocessor: nn.Module
    use_features: bool

    def full_model(self, trained: GraderModel) -> GraderModel:
        """The whole grader around the trained (or selected) weights of what the engine trained."""
        return with_backbone(self.model, trained) if self.use_features else trained


def training_sets(spec, model: GraderModel, arrays: dict, labels: dict, runtime: Runtime,
                  cache_dir: Path | None) -> TrainingSets:
    """Every split as the engine's dataset: ``arrays`` (uint8 per split) and ``labels``, or their features.

    ``cache_dir`` None keeps computed features in process memory only.
    """
    size = spec.build.input_size
    augmentation = build_augmentation(spec.train.augmentation, size)
    preprocessor = BatchPreprocessor(augmentation, model.backbone.mean, model.backbone.std)
    images = {name: ImageArrayDataset(arrays[name], labels[name]) for name in arrays}
    if not feature_cache_applies(spec.data.feature_cache, model, augmentation):
        return TrainingSets(images, images, model, preprocessor, model, preprocessor, False)
    features = feature_sets(spec.model.backbone, model, preprocessor, size, arrays, labels, cache_dir, runtime)
    return TrainingSets(features, images, model, preprocessor, head_only(model), FeaturePassThrough(), True)
