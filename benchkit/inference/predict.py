"""Predict with a finished run: its model, its best weights and its own preprocessing.

``load_run(RUN_DIR)`` reads ``config.yaml`` (imports the plugins it names, builds the model without
downloading anything), ``best.safetensors`` (or the ``best.pt`` of an earlier version, ``weights_only=True``)
and ``run.json`` (:func:`benchkit.results.run_folder.read_best`), and returns a :class:`LoadedRun`
whose ``predict(images)`` takes image files, folders, PIL images, uint8 arrays or tensors
(:mod:`benchkit.data.inputs`), resizes each to the run's input size exactly as training did
(:func:`benchkit.data.decode.decode_image`), a batch at a time, normalises with the backbone's
mean/std, applies no augmentation, averages over the run's test-time views (``evaluation.tta``) when
it had them, and decodes the head's estimate into level, continuous score and, for heads that have
them, class probabilities; every result names the TTA used (``tta``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import yaml
from PIL import Image, UnidentifiedImageError

from benchkit.config.schema import BuildInputs, RunSpec
from benchkit.data import inputs
from benchkit.errors import ConfigError, DataError, WeightsError, format_listing, path_argument
from benchkit.training.tta import build_views, tta_estimate, tta_label
from benchkit.models.grader import GraderModel, model_for
from benchkit.progress import TaskProgress
from benchkit.registry import import_plugins
from benchkit.results import run_folder
from benchkit.training.runtime import Runtime, device_problem, forward_all
from benchkit.training.transforms import BatchPreprocessor


class LoadedRun:
    """A trained run, ready for inference on image files, folders, PIL images, arrays and tensors."""

    def __init__(self, run_dir: Path, spec: RunSpec, model: GraderModel, classes: list[str],
                 input_size: int, mean: Sequence[float], std: Sequence[float], runtime: Runtime):
        self.run_dir, self.spec, self.model, self.classes = run_dir, spec, model, classes
        self.input_size, self.runtime = input_size, runtime
        self.preprocessor = BatchPreprocessor([], mean, std).to(runtime.device)
        self.views = build_views(spec.evaluation.tta)
        self.tta = tta_label(spec.evaluation.tta)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def has_probabilities(self) -> bool:
        return bool(getattr(self.model.head, "has_probabilities", False))

    def preprocess(self, images: Any) -> torch.Tensor:
        """Images (any kind :meth:`predict` takes) -> ``(N, 3, S, S)`` uint8 at the run's input size."""
        return inputs.decode(inputs.as_items(images), self.input_size)

    def outputs(self, images, preprocessor=None) -> torch.Tensor:
        """Raw head outputs (float32, CPU) for uint8 ``(N, 3, S, S)`` images at the run's input size
        (``preprocessor``: another than the run's, e.g. a test-time view)."""
        return forward_all(self.model, images, self.runtime, preprocessor or self.preprocessor)

    def estimate(self, images) -> dict:
        """The head's estimate of uint8 images: one forward pass, or the mean over the run's test-time views."""
        head = self.model.head
        if not self.views:
            return head.estimate(self.outputs(images))
        return tta_estimate(head, self.views, self.preprocessor, lambda prep: self.outputs(images, prep),
                            seed=self.spec.seed)

    def predict(self, images: Any, as_frame: bool = False, progress: bool = False) -> list[dict] | pd.DataFrame:
        """Grade one image or many: paths, PIL images, uint8 arrays ``(H, W[, 3|4])``, tensors ``(C, H, W)``
        (uint8, or float in 0..1), a list of those, or a 4-D array/tensor batch.

        Per image: ``level`` (0-based), ``level_name``, ``score``, ``probabilities`` (heads that have them)
        and, for a path, ``image``. ``as_frame=True``: one DataFrame row per image (``image`` is the path or
        the position; ``prob_<class>`` columns). Images are decoded a batch at a time; ``progress`` shows a
        bar on standard error when there are several batches.
        """
        items = inputs.with_folders_opened(inputs.as_items(images))
        batch_size = self.runtime.eval_batch_size
        results: list[dict] = []
        with TaskProgress(f"predicting {len(items)} image(s)", len(items), progress and len(items) > batch_size) as bar:
            for start, batch in inputs.decode_batches(items, self.input_size, batch_size):
                head = self.model.head
                pred = head.decode_estimate(self.estimate(batch), include_unfitted=True)[head.decode]
                for i in range(len(pred.level)):
                    results.append(self._result(items[start + i], pred, i))
                bar.advance(len(batch))
        if not as_frame:
            return results
        return predictions_frame([{"image": inputs.describe(item, i), **r} for i, (item, r) in
                                  enumerate(zip(items, results))], self.classes)

    def predict_files(self, paths: Sequence[str | Path], progress: bool = False) -> list[dict]:
        """Read image files and the image files in folders (recursively; any format PIL reads) and predict
        them; each result names its ``image``. Bad paths are reported, together, in one DataError."""
        paths = [path_argument(p, "paths[]", "an image file or folder")
                 for p in ([paths] if isinstance(paths, (str, Path)) else inputs.as_items(paths))]
        problems = image_problems(paths)
        if problems:
            raise DataError(f"{len(problems)} of the {len(paths)} path(s) cannot be read:\n"
                            + format_listing(problems))
        return self.predict(inputs.image_files(paths), progress=progress)

    def _result(self, item: Any, pred, i: int) -> dict:
        level = int(pred.level[i])
        result = {"image": str(item)} if isinstance(item, (str, Path)) else {}
        result.update(level=level, level_name=self.classes[level], score=float(pred.score[i]), tta=self.tta)
        if pred.probs is not None:
            result["probabilities"] = {name: float(p) for name, p in zip(self.classes, pred.probs[i])}
        return result


def predictions_frame(results: list[dict], classes: Sequence[str]) -> pd.DataFrame:
    """Prediction results as a table: ``image, level, level_name, score`` and ``prob_<class>`` columns."""
    rows = []
    for result in results:
        row = {key: result[key] for key in ("image", "level", "level_name", "score") if key in result}
        row.update({f"prob_{name}": p for name, p in (result.get("probabilities") or {}).items()})
        rows.append(row)
    columns = ["image", "level", "level_name", "score"]
    if any("probabilities" in r for r in results):
        columns += [f"prob_{name}" for name in classes]
    return pd.DataFrame(rows, columns=columns)


RUN_FACTS = ("classes", "input_size", "mean", "std")
"""What prediction needs besides the weights (:func:`benchkit.results.run_folder.read_best`)."""


def run_folder_problems(run_dir: str | Path) -> list[str]:
    """Why ``run_dir`` is not a finished run folder (missing folder, config or best weights) nor an exported
    one; empty when it is."""
    from benchkit.results.exported import is_export
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [f"{run_dir}: " + ("not a folder" if run_dir.exists() else "no such folder")]
    if is_export(run_dir):
        return []
    missing = [name for name in (run_folder.CONFIG,) if not (run_dir / name).is_file()]
    if run_folder.best_weights_path(run_dir) is None:
        missing.append(run_folder.BEST_WEIGHTS)
    return [f"{run_dir}: {name} is missing (is this a finished run folder, results/<experiment>/runs/"
            f"<run_id>?)" for name in missing]


def device_problems(device: str | None) -> list[str]:
    """Why ``device`` cannot be used here (not a torch device, or CUDA absent); empty when it can."""
    problem = device_problem(device, "--device")
    return [problem] if problem else []


def image_problems(paths: Sequence[str | Path]) -> list[str]:
    """One line per path that cannot be predicted: missing, a folder without image files, a file that
    is not a readable image (files inside folders are read when their batch is reached)."""
    problems = []
    for path in map(Path, paths):
        if path.is_dir():
            if not inputs.folder_images(path):
                problems.append(f"{path}: a folder without image files")
        elif not path.exists():
            problems.append(f"{path}: no such file")
        else:
            try:
                with Image.open(path) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                problems.append(f"{path}: not a readable image ({type(exc).__name__}: {exc})")
    return problems


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> LoadedRun:
    """Load a finished run folder (``config.yaml``, ``best.safetensors`` or an earlier version's ``best.pt``,
    ``run.json``), or a folder ``benchkit export`` wrote (``config.json`` + ``model.safetensors``), for prediction."""
    from benchkit.results.exported import is_export, read_export
    run_dir = path_argument(run_dir, "run_dir", "a run folder")
    if device is not None and not isinstance(device, (str, torch.device)):
        raise ConfigError(f"device: expected a str such as 'cpu' or 'cuda:0', or a torch.device, got {device!r}")
    problem = device_problem(str(device) if device is not None else None, "device")
    if problem:
        raise ConfigError(problem)
    if is_export(run_dir):
        raw, checkpoint = read_export(run_dir)
        config_path, weights_path = run_dir / "config.json", run_dir / "model.safetensors"
        spec = RunSpec.model_validate(raw)
        import_plugins(spec.plugins, spec.base_dir)
    else:
        config_path = run_dir / run_folder.CONFIG
        spec, checkpoint = _read_run_folder(run_dir, config_path)
        weights_path = run_folder.best_weights_path(run_dir)
    if spec.build is None:  # a run folder written before build inputs were saved with the config
        spec = spec.model_copy(update={"build": BuildInputs(classes=list(checkpoint["classes"]),
                                                            input_size=int(checkpoint["input_size"]))})
    classes = spec.build.classes
    model = model_for(spec, weights=False)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise WeightsError(f"{weights_path}: weights do not fit the model of {config_path}: {exc}") from None
    runtime = Runtime.resolve(spec.train, device=device if device is not None else "auto")
    return LoadedRun(run_dir, spec, runtime.place(model).eval(), classes, spec.build.input_size,
                     checkpoint["mean"], checkpoint["std"], runtime)


def _read_run_folder(run_dir: Path, config_path: Path) -> tuple[RunSpec, dict]:
    """The run's config and a checkpoint as an export reads back: ``model`` and the :data:`RUN_FACTS`."""
    problems = run_folder_problems(run_dir)
    if problems:
        raise ConfigError(problems[0])
    try:
        spec = RunSpec.model_validate(yaml.safe_load(config_path.read_text(encoding="utf-8")))
    except Exception as exc:
        raise ConfigError(f"{config_path}: not a run config: {exc}") from None
    import_plugins(spec.plugins, spec.base_dir)
    weights, facts = run_folder.read_best(run_dir)
    missing = [key for key in RUN_FACTS if facts.get(key) is None]
    if missing:
        raise ConfigError(f"{run_dir / run_folder.INFO}: {', '.join(missing)} missing (is this a finished run "
                          f"folder?)")
    return spec, {"model": weights, **{key: facts[key] for key in RUN_FACTS}}


def _open_image(path: Path) -> Image.Image:
    problems = image_problems([path])
    if problems:
        raise DataError(problems[0])
    return inputs.open_image(path)
