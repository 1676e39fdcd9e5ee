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
from pathlib import Path

import pandas as pd
import torch

from benchkit.config import RunSpec, dump_yaml
from benchkit.data.prepare import cache_dir, decoded_split, prepare_dataset
from benchkit.training.engine import Engine, monitor_is_max
from benchkit.training.memory import PeakMemory, describe_out_of_memory, is_out_of_memory
from benchkit.training.feature_cache import (FeaturePassThrough, feature_cache_applies, feature_sets, head_only,
                                   with_backbone)
from benchkit.data.decode import ImageArrayDataset
from benchkit.io import atomic_path, read_json, save_torch, write_json, write_text
from benchkit.evaluation.prediction_files import prediction_frame
from benchkit.evaluation.scoring import score_estimates
from benchkit.evaluation.tta import build_views, tta_estimate, tta_label
from benchkit.models.grader import GraderModel, count_parameters, model_for, resolve_build
from benchkit.results.plots import try_plots, write_run_plots
from benchkit.progress import RunProgress
from benchkit.registry import import_plugins
from benchkit.results.tracking import RunTracker, open_tracker
from benchkit.training.runtime import Runtime
from benchkit.training.transforms import BatchPreprocessor, build_augmentation

EVAL_SPLITS = ("valid", "test")


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
    if spec.build is None:  # not resolved by an experiment's input check
        spec = resolve_build(spec, dataset.classes, dataset.splits["train"].labels)
        write_text(run_dir / "config.yaml", dump_yaml(spec.model_dump(mode="json")))
    build = spec.build
    num_classes, size = build.num_classes, build.input_size
    model = model_for(spec)
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
    monitor = spec.train.early_stopping.monitor
    maximize = monitor_is_max(monitor, spec.train.early_stopping.mode)
    with RunProgress(spec.run_id, spec.train.epochs, monitor, quiet, maximize=maximize) as progress:
        engine = Engine(trained, engine_prep, spec.train, num_classes, runtime=runtime,
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
