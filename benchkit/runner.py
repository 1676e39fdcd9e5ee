"""One run, start to finish: data -> model -> engine -> predictions -> metrics -> run folder.

A run folder ``runs/<run_id>/`` holds ``config.yaml`` (resolved), ``history.csv``,
``predictions_<split>.csv``, ``best.pt`` and, written last, ``metrics.json``; a run counts as
finished when its ``metrics.json`` says ``status: ok``. A failing run writes ``status: failed``
with its error and leaves the other runs alone.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import time
import traceback
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchkit.config import DataConfig, RunSpec, dump_yaml
from benchkit.data.datasets import Dataset, Split, read_imagefolder, read_roboflow_csv
from benchkit.data.image_cache import cached_split, resolve_cache_dir
from benchkit.training.engine import Engine, monitor_is_max
from benchkit.training.memory import PeakMemory, describe_out_of_memory, is_out_of_memory
from benchkit.errors import BenchkitError, DataError
from benchkit.training.feature_cache import (FeaturePassThrough, feature_cache_applies, feature_sets, head_only,
                                   with_backbone)
from benchkit.data.decode import ImageArrayDataset, decode_split
from benchkit.io import atomic_path, read_json, save_torch, write_json, write_text
from benchkit.evaluation.prediction_files import prediction_frame
from benchkit.evaluation.scoring import score_estimates
from benchkit.evaluation.tta import build_views, tta_estimate, tta_label
from benchkit.models.grader import GraderModel, build_model, count_parameters
from benchkit.results.plots import try_plots, write_run_plots
from benchkit.progress import RunProgress
from benchkit.registry import import_plugins
from benchkit.results.tracking import RunTracker, open_tracker
from benchkit.training.runtime import Runtime
from benchkit.training.transforms import BatchPreprocessor, build_augmentation

EVAL_SPLITS = ("valid", "test")


# ---------------------------------------------------------------- data

def resolve_data_root(data: DataConfig, base_dir: Path) -> Path | None:
    """``data.root`` if absolute, else relative to the experiment file's folder, else to the current one.

    A root found in neither place resolves beside the experiment file, which the error then names.
    """
    if data.root is None:
        return None
    if data.root.is_absolute():
        return data.root
    beside = base_dir / data.root
    return data.root if data.root.exists() and not beside.exists() else beside


def load_dataset(data: DataConfig, base_dir: Path = Path(".")) -> Dataset:
    """Read the dataset a data config names (cached per process)."""
    root = resolve_data_root(data, base_dir)
    return _load_dataset_cached(data.model_dump_json(), str(root) if root else None)


@lru_cache(maxsize=4)
def _load_dataset_cached(data_json: str, root: str | None) -> Dataset:
    data = DataConfig.model_validate_json(data_json)
    if data.format == "synthetic":
        from benchkit.data.synthetic import make_synthetic_dataset
        syn = data.synthetic
        return make_synthetic_dataset(syn.num_classes, {"train": syn.train, "valid": syn.valid,
                                                        "test": syn.test}, syn.image_size, syn.seed)
    if data.format == "imagefolder":
        return read_imagefolder(Path(root), data.classes)
    return read_roboflow_csv(Path(root), data.classes)


def prepare_dataset(spec: RunSpec) -> Dataset:
    """The run's train/valid/test: official or subject-disjoint split, then the optional slice."""
    dataset = load_dataset(spec.data, spec.base_dir)
    if spec.data.split != "official":
        from benchkit.data.splits import make_splits
        chosen = make_splits(dataset, spec.data.split, k=spec.data.folds, fold=spec.fold,
                             fractions=spec.data.holdout_fractions, seed=spec.data.split_seed,
                             subject_regex=spec.data.subject_regex,
                             subject_with_label=spec.data.subject_with_label)
        dataset = chosen[0][1]
    if spec.data.max_per_split:
        dataset = Dataset(dataset.name, dataset.classes,
                          {n: _stratified_slice(s, spec.data.max_per_split, spec.data.split_seed)
                           for n, s in dataset.splits.items()}, dataset.root)
    for needed in ("train", "valid"):
        if needed not in dataset.splits or len(dataset.splits[needed]) == 0:
            raise DataError(f"dataset {dataset.root or dataset.name}: split {needed!r} is missing or empty")
    if len(dataset.splits["train"]) == 1:
        raise DataError(f"dataset {dataset.root or dataset.name}: split 'train' has a single image; training "
                        f"needs at least 2 (BatchNorm cannot normalise one)")
    _check_label_coverage(dataset)
    return dataset


def _stratified_slice(split: Split, limit: int, seed: int) -> Split:
    if len(split) <= limit:
        return split
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(split))
    by_class = [order[split.labels[order] == k] for k in np.unique(split.labels)]
    picked = [idx for group in _round_robin(by_class) for idx in group][:limit]
    return split.subset(sorted(picked))


def _round_robin(groups):
    """Interleave index arrays class by class: [[a0], [b0], [a1], [b1], ...]."""
    longest = max(len(g) for g in groups)
    for i in range(longest):
        yield [g[i] for g in groups if i < len(g)]


def _check_label_coverage(dataset: Dataset) -> None:
    train_levels = set(dataset.splits["train"].labels.tolist())
    for name, split in dataset.splits.items():
        missing = sorted(set(split.labels.tolist()) - train_levels)
        if missing:
            names = [dataset.classes[k] for k in missing]
            raise DataError(f"classes {names} occur in split {name!r} but not in train: a model "
                            f"cannot learn them (check the labels or the split)")


_DECODED: dict = {}


def decoded_split(spec: RunSpec, dataset: Dataset, split_name: str, size: int) -> np.ndarray:
    """The split's images as uint8 arrays at ``size``, decoded once per process.

    Image files go through the disk cache (memory-mapped, decoded once per file content and size)
    when ``data.cache`` is on; synthetic images are drawn in memory.
    """
    split = dataset.splits[split_name]
    key = (dataset.name, str(dataset.root), split_name, tuple(split.ids), size, spec.data.cache)
    if key not in _DECODED:
        if spec.data.cache and split.paths is not None:
            _DECODED[key] = cached_split(split, size, cache_dir(spec))
        else:
            _DECODED[key] = decode_split(split, size)
    return _DECODED[key]


def cache_dir(spec: RunSpec) -> Path:
    """Where the run's decoded images and frozen-backbone features are cached."""
    return resolve_cache_dir(spec.data.cache_dir, spec.base_dir)


# ---------------------------------------------------------------- one run

def run_dir_of(out_dir: Path, run_id: str) -> Path:
    return Path(out_dir) / "runs" / run_id


def execute_run(spec: RunSpec, out_dir: Path, quiet: bool = False, resume: bool = False) -> dict:
    """Train and evaluate one run; always returns its leaderboard row (``status`` ok or failed)."""
    run_dir = run_dir_of(out_dir, spec.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_yaml(spec.model_dump(mode="json")))
    row = base_row(spec)
    started = time.perf_counter()
    tracker = None
    runtime = Runtime.resolve(spec.train)
    with PeakMemory(runtime.device) as peak:
        try:
            tracker = open_tracker(spec, out_dir)
            row.update(_train_and_evaluate(spec, run_dir, runtime, quiet, resume, tracker))
            row["status"] = "ok"
            (run_dir / "error.log").unlink(missing_ok=True)
            if spec.evaluation.plots:
                try_plots(write_run_plots, run_dir)
        except Exception as exc:
            row.update(status="failed", error=_describe_error(exc, spec, runtime))
            write_text(run_dir / "error.log", traceback.format_exc())
            discard_results(run_dir)
    row.update(peak.row())
    if row["status"] != "ok":
        _release_memory()
    row["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json(run_dir / "metrics.json", {"row": row})
    if tracker is not None:
        tracker.finish(row, run_dir)
    return row


RESULT_FILES = ("metrics.json", "best.pt", "history.csv", "details.json", "predictions_*.csv")


def discard_results(run_dir: Path) -> None:
    """Remove a run's result files (not its checkpoint ``last.pt``), so none outlives a failed attempt."""
    for pattern in RESULT_FILES:
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)


def _release_memory() -> None:
    """Free what a failed run held (an out-of-memory run must not starve the next one)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def base_row(spec: RunSpec) -> dict:
    """The identifying columns of a run's leaderboard row."""
    row = {"run_id": spec.run_id, "model": spec.model_name, "backbone": spec.model.backbone.name,
           "head": spec.model.head.name, "seed": spec.seed, "split": spec.split, "fold": spec.fold}
    row.update(spec.grid)
    row.update(status="pending", error="")
    return row


def _chain(*callbacks):
    """One callback calling each of ``callbacks`` that is set, in order."""
    chosen = [c for c in callbacks if c]

    def call(*args) -> None:
        for callback in chosen:
            callback(*args)
    return call


def _describe_error(exc: Exception, spec: RunSpec, runtime: Runtime) -> str:
    if is_out_of_memory(exc):
        return describe_out_of_memory(spec.train.batch_size, runtime.device)
    return f"{type(exc).__name__}: {exc}"


def _train_and_evaluate(spec: RunSpec, run_dir: Path, runtime: Runtime, quiet: bool, resume: bool,
                        tracker: RunTracker | None = None) -> dict:
    import_plugins(spec.plugins, spec.base_dir)
    dataset = prepare_dataset(spec)
    num_classes = dataset.num_classes
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, num_classes, spec.data.image_size)
    size = spec.data.image_size or model.backbone.input_size
    counts = count_parameters(model)
    augmentation = build_augmentation(spec.train.augmentation, size)
    preprocessor = BatchPreprocessor(augmentation, model.backbone.mean, model.backbone.std)
    sets = images = {name: ImageArrayDataset(decoded_split(spec, dataset, name, size), split.labels)
                     for name, split in dataset.splits.items()}
    trained, engine_prep = model, preprocessor
    use_features = feature_cache_applies(spec.data.feature_cache, model, augmentation)
    if use_features:
        sets = feature_sets(spec.model.backbone, model, preprocessor, size, {n: s.images for n, s in sets.items()},
                            {n: s.labels for n, s in sets.items()},
                            cache_dir(spec) if spec.data.cache else None, runtime)
        trained, engine_prep = head_only(model), FeaturePassThrough()
    class_weights = _class_weights(spec, dataset.splits["train"].labels, num_classes)
    monitor = spec.train.early_stopping.monitor
    maximize = monitor_is_max(monitor, spec.train.early_stopping.mode)
    with RunProgress(spec.run_id, spec.train.epochs, monitor, quiet, maximize=maximize) as progress:
        engine = Engine(trained, engine_prep, spec.train, num_classes, runtime=runtime,
                        class_weights=class_weights,
                        on_epoch=_chain(progress.epoch, tracker and tracker.epoch),
                        on_step=progress.step, on_resume=progress.resumed)
        result = engine.fit(sets["train"], sets["valid"], spec.seed,
                            checkpoint_path=run_dir / "last.pt", resume=resume)
        progress.set_total(result.epochs_run)
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(result.history).to_csv(tmp, index=False)
    engine.load_best()
    eval_model: GraderModel = engine.eval_model
    if use_features:
        eval_model = with_backbone(model, eval_model)
    head = eval_model.head
    estimates = _estimates(spec, engine, eval_model, preprocessor, sets, images)
    targets = {name: dataset.splits[name].labels for name in estimates}
    scores = score_estimates(head, estimates, targets, num_classes, spec.evaluation.bootstrap)
    save_torch(run_dir / "best.pt", {
        "model": eval_model.state_dict(), "run_id": spec.run_id, "classes": dataset.classes,
        "input_size": size, "mean": list(model.backbone.mean), "std": list(model.backbone.std),
        "epoch": result.best_epoch, "config": json.loads(spec.model_dump_json())})
    row = {"params_total": counts["total"], "params_trainable": counts["trainable"],
           "params_frozen": counts["frozen"], "epochs": result.epochs_run,
           "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 3),
           "input_size": size, "weights_source": model.backbone.weights_source,
           **_weights_skipped(model.backbone.weights_report),
           "device": str(engine.device), "skipped_steps": result.skipped_steps,
           "num_classes": num_classes, "tta": tta_label(spec.evaluation.tta)}
    row.update(scores.row)
    for name, estimate in estimates.items():
        split = dataset.splits[name]
        frame = prediction_frame(split.ids, split.labels, scores.predictions[name], estimate)
        with atomic_path(run_dir / f"predictions_{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    write_json(run_dir / "details.json", {"bootstrap": scores.details, "calibration": scores.calibration,
                                          "feature_cache": use_features, "weights": model.backbone.weights_report,
                                          "environment": environment(runtime)})
    return row


def _estimates(spec: RunSpec, engine: Engine, eval_model: GraderModel, preprocessor: BatchPreprocessor,
               sets: dict, images: dict) -> dict:
    """Each evaluated split's estimate: one forward pass, or with ``evaluation.tta`` the mean over its views.

    Views transform images, so with TTA the whole model runs on the images even when training used
    cached backbone features.
    """
    head = eval_model.head
    names = [name for name in EVAL_SPLITS if name in sets]
    views = build_views(spec.evaluation.tta)
    if not views:
        return {name: head.estimate(engine.outputs(sets[name])) for name in names}
    full, prep = eval_model.to(engine.device), preprocessor.to(engine.device)
    return {name: tta_estimate(head, views, prep, lambda view_prep, name=name: engine.outputs(
        images[name], full, view_prep), seed=spec.seed) for name in names}


def _weights_skipped(report: dict | None) -> dict:
    """``weights_skipped``: tensors a local weights file did not fill or could not place (partial loads)."""
    if report is None:
        return {}
    return {"weights_skipped": len(report["missing"]) + len(report["unexpected"]) + len(report["mismatched"])}


def _class_weights(spec: RunSpec, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    choice = spec.train.class_weights
    if choice == "none":
        return None
    if choice == "balanced":
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
        return torch.tensor(weights, dtype=torch.float32)
    if len(choice) != num_classes:
        raise BenchkitError(f"train.class_weights has {len(choice)} values for {num_classes} classes")
    return torch.tensor(choice, dtype=torch.float32)


def environment(runtime: Runtime) -> dict:
    """Versions, device and precision, recorded with every run."""
    import kornia
    import timm
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "kornia": kornia.__version__, "device": str(runtime.device),
            "precision": runtime.precision,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def read_run_row(run_dir: Path) -> dict | None:
    """The row a finished (or failed) run wrote, or None if it has not finished."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    return read_json(path).get("row")
