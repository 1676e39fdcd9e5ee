"""Predict with a finished run: its model, its best weights and its own preprocessing.

``load_run(RUN_DIR)`` reads ``config.yaml`` (imports the plugins it names, builds the model without
downloading anything) and ``best.pt`` (``weights_only=True``), and returns a :class:`LoadedRun`
whose ``predict(images)`` resizes each PIL image to the run's input size exactly as training did
(:func:`benchkit.data.decode.decode_image`), normalises with the backbone's mean/std, applies no
augmentation, and decodes the head's outputs into level, continuous score and, for heads that have
them, class probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml
from PIL import Image, UnidentifiedImageError

from benchkit.config import RunSpec
from benchkit.training.engine import autocast_dtype, resolve_device
from benchkit.errors import BenchkitError, ConfigError, DataError
from benchkit.data.decode import decode_image
from benchkit.data.rgb import to_rgb
from benchkit.io import load_torch
from benchkit.models.grader import GraderModel, build_model
from benchkit.registry import import_plugins
from benchkit.training.transforms import BatchPreprocessor


class LoadedRun:
    """A trained run, ready for inference on PIL images."""

    def __init__(self, run_dir: Path, spec: RunSpec, model: GraderModel, classes: list[str],
                 input_size: int, mean: Sequence[float], std: Sequence[float], device: torch.device):
        self.run_dir, self.spec, self.model, self.classes = run_dir, spec, model, classes
        self.input_size, self.device = input_size, device
        self.preprocessor = BatchPreprocessor([], mean, std).to(device)
        self.amp_dtype = autocast_dtype(spec.train, device)
        self.batch_size = spec.train.eval_batch_size or 2 * spec.train.batch_size

    @property
    def has_probabilities(self) -> bool:
        return bool(getattr(self.model.head, "has_probabilities", False))

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> ``(N, 3, S, S)`` uint8 at the run's input size (no augmentation)."""
        arrays = [decode_image(to_rgb(img), self.input_size) for img in images]
        return torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, self.input_size,
                                                                              self.input_size, dtype=torch.uint8)

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image]) -> list[dict]:
        """Per image: ``level`` (0-based), ``level_name``, ``score`` and, where the head has them, ``probabilities``."""
        batch = self.preprocess(images)
        self.model.eval()
        results = []
        for start in range(0, len(batch), self.batch_size):
            inputs = self.preprocessor(batch[start:start + self.batch_size].to(self.device), train=False)
            if self.spec.train.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                outputs = self.model(inputs).float()
            pred = self.model.head.predict(outputs.cpu())
            for i in range(len(pred.level)):
                level = int(pred.level[i])
                item = {"level": level, "level_name": self.classes[level], "score": float(pred.score[i])}
                if pred.probs is not None:
                    item["probabilities"] = {name: float(p) for name, p in zip(self.classes, pred.probs[i])}
                results.append(item)
        return results

    def predict_files(self, paths: Sequence[str | Path]) -> list[dict]:
        """Read image files (any format PIL reads) and predict them; each result names its ``image``."""
        images = [_open_image(Path(p)) for p in paths]
        return [{"image": str(p), **result} for p, result in zip(paths, self.predict(images))]


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> LoadedRun:
    """Load a finished run folder (``config.yaml`` + ``best.pt``) for prediction."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.yaml", run_dir / "best.pt"
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise ConfigError(f"{run_dir}: {needed.name} is missing (is this a finished run folder, "
                              f"results/<experiment>/runs/<run_id>?)")
    try:
        spec = RunSpec.model_validate(yaml.safe_load(config_path.read_text(encoding="utf-8")))
    except Exception as exc:
        raise ConfigError(f"{config_path}: not a run config: {exc}") from None
    import_plugins(spec.plugins, spec.base_dir)
    checkpoint = load_torch(weights_path)
    classes = list(checkpoint["classes"])
    architecture = spec.model.model_copy(deep=True)
    architecture.backbone.pretrained, architecture.backbone.weights = False, None
    architecture.backbone.weights_map = None
    model = build_model(architecture, len(classes))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise BenchkitError(f"{weights_path}: weights do not fit the model of {config_path}: {exc}") from None
    device = torch.device(device) if device is not None else resolve_device("auto")
    model.to(device)
    if spec.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return LoadedRun(run_dir, spec, model.eval(), classes, int(checkpoint["input_size"]),
                     checkpoint["mean"], checkpoint["std"], device)


def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image: {exc}") from None
