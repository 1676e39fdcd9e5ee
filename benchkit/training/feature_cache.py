"""Frozen-backbone features, computed once and shared by every head trained on them.

When a run's backbone is fully frozen and its training inputs are not augmented, the backbone maps
each image to the same pooled feature vector in every epoch of every run (a frozen backbone runs in
eval mode, see :class:`benchkit.models.grader.GraderModel`). The features are then computed once per
(backbone name and options, weights, input size, preprocessing, precision, split content), kept in
process memory and on disk under ``<cache dir>/features/``, and the engine trains only the head:
its model is ``GraderModel(Identity, head)`` and its preprocessor passes features through.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from benchkit.data.image_cache import file_lock
from benchkit.io import atomic_path, write_json
from benchkit.memo import Memo
from benchkit.models.grader import GraderModel
from benchkit.training.runtime import Runtime, forward_all
from benchkit.training.transforms import BatchPreprocessor

FEATURE_FORMAT = "features-v1"
FEATURES_FOLDER = "features"
MEMORY_ENTRIES = 32

_MEMORY = Memo("features", maxsize=MEMORY_ENTRIES)


def feature_cache_applies(enabled: bool, model: GraderModel, augmentation) -> bool:
    """Whether a run may train on cached features: enabled (``data.feature_cache``), no augmentation,
    backbone fully frozen."""
    return (enabled and len(augmentation) == 0
            and not any(p.requires_grad for p in model.backbone.parameters()))


class FeatureDataset(Dataset):
    """``(feature vector, level)`` pairs; ``labels`` as the engine expects."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        self.features = features
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.features[index], int(self.labels[index])

    def gather(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one copy, as :meth:`benchkit.data.decode.ImageArrayDataset.gather`."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self.features[idx], torch.from_numpy(self.labels[idx.numpy()])


class FeaturePassThrough(nn.Module):
    """The preprocessor of a head-only engine: features are already model inputs."""

    def forward(self, features: torch.Tensor, train: bool, groups=None, seed: int | None = None) -> torch.Tensor:
        return features.float()


def head_only(model: GraderModel) -> GraderModel:
    """A model sharing ``model.head`` whose backbone is the identity (its inputs are features)."""
    return GraderModel(nn.Identity(), model.head)


def with_backbone(model: GraderModel, trained: GraderModel) -> GraderModel:
    """The full model again: ``model``'s frozen backbone under the trained head."""
    return GraderModel(model.backbone, trained.head)


def weights_hash(module: nn.Module) -> str:
    """blake2b of every tensor of the state dict (name, dtype, shape and values)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def split_fingerprint(images) -> str:
    """The content identity of a decoded split: the disk cache's fingerprint, else a hash of the pixels."""
    known = getattr(images, "fingerprint", None)
    if known:
        return str(known)
    array = np.ascontiguousarray(np.asarray(images))
    digest = hashlib.blake2b(f"{array.shape}|{array.dtype}|".encode(), digest_size=16)
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def feature_key(backbone_config, model: GraderModel, size: int, split_content: str, runtime: Runtime,
                weights: str | None = None) -> str:
    """The cache key of one split's features for a run's backbone (its ``BackboneConfig``) and runtime."""
    parts = {"format": FEATURE_FORMAT, "backbone": backbone_config.name, "options": backbone_config.options,
             "drop_path": backbone_config.drop_path, "weights": weights or weights_hash(model.backbone),
             "size": size, "mean": list(model.backbone.mean), "std": list(model.backbone.std),
             "precision": runtime.precision, "device": runtime.device.type,
             "channels_last": runtime.channels_last, "split": split_content}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def compute_features(backbone: nn.Module, preprocessor: BatchPreprocessor, images, runtime: Runtime) -> torch.Tensor:
    """Pooled features ``(N, F)`` float32 on the CPU, through the one inference path."""
    was_training = backbone.training
    runtime.place(backbone)
    try:
        features = forward_all(backbone, images, runtime, preprocessor.to(runtime.device))
    finally:
        backbone.train(was_training)
    return features if len(features) else torch.empty(0, 0)


def feature_sets(backbone_config, model: GraderModel, preprocessor: BatchPreprocessor, size: int,
                 images: dict, labels: dict, cache_dir: Path | None, runtime: Runtime) -> dict[str, FeatureDataset]:
    """Every split as a :class:`FeatureDataset`, from memory, from ``cache_dir`` or computed once.

    ``cache_dir`` None keeps the features in process memory only.
    """
    weights = weights_hash(model.backbone)
    home = next(model.backbone.parameters(), torch.empty(0)).device
    out = {}
    try:
        for name, array in images.items():
            key = feature_key(backbone_config, model, size, split_fingerprint(array), runtime, weights)

            def compute(array=array):
                return compute_features(model.backbone, preprocessor, array, runtime)

            features = _lookup(key, compute, cache_dir, {"backbone": backbone_config.name,
                                                         "size": size, "split": name, "images": len(array)})
            out[name] = FeatureDataset(features, labels[name])
    finally:
        model.backbone.to(home)
    return out


def _lookup(key: str, compute, cache_dir: Path | None, description: dict) -> torch.Tensor:
    kept = _MEMORY.peek(key)
    if kept is not None:
        return kept
    if cache_dir is None:
        features = compute()
    else:
        folder = Path(cache_dir) / FEATURES_FOLDER
        path = folder / f"{key}.npy"
        with file_lock(folder / f"{key}.lock"):
            if path.is_file():
                features = torch.from_numpy(np.load(path))
            else:
                features = compute()
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, features.numpy())
                write_json(folder / f"{key}.json", {**description, "shape": list(features.shape)})
    _MEMORY.put(key, features)
    return features


def clear_memory() -> None:
    """Forget the features held in this process (the disk cache stays)."""
    _MEMORY.clear()
