"""One run, start to finish, as a recipe: data -> model -> training -> evaluation -> run folder.

Each step lives in a module named for it: :mod:`benchkit.data.prepare` (the split and decoded
images), :func:`benchkit.models.grader.model_for` (the model from the resolved build inputs),
:mod:`benchkit.training.training_sets` (images or cached features), :mod:`benchkit.training.engine`
(the loop), :mod:`benchkit.evaluation.scoring` (decodings and metrics) and
:mod:`benchkit.results.run_folder` (every file of ``runs/<run_id>/``). A run counts as finished when
its ``metrics.json`` says ``status: ok``; a failing run writes ``status: failed`` with its error and
leaves the other runs alone. The resume state lives while the run trains; a run that ends well drops it
(unless ``train.keep_resume_state``), one that fails or is killed keeps it to resume.
"""

from __future__ import annotations

import gc
import os
import platform
import time
import traceback
from pathlib import Path

import torch

from benchkit.config.schema import EVALUATED_SPLITS, RunSpec
from benchkit.data.prepare import cache_dir, decoded_split, prepare_dataset
from benchkit.evaluation.prediction_files import prediction_frame
from benchkit.inference.export import export_run
from benchkit.evaluation.scoring import score_estimates
from benchkit.execution.studies import TrialPruned, pruning_reporter
from benchkit.training.tta import build_views, tta_estimate, tta_label
from benchkit.models.freezing import parameter_counts
from benchkit.models.grader import BuiltModel, GraderModel, model_for
from benchkit.progress import RunProgress
from benchkit.registry import import_plugins
from benchkit.results import run_folder
from benchkit.results.plots import try_plots, write_run_plots
from benchkit.results.tracking import RunTracker, open_tracker
from benchkit.training.engine import Engine, TrainResult, monitor_is_max
from benchkit.training.memory import PeakMemory, describe_out_of_memory, is_out_of_memory
from benchkit.training.build_inputs import resolve_build
from benchkit.training.runtime import Runtime
from benchkit.training.training_sets import TrainingSets, training_sets



def execute_run(spec: RunSpec, out_dir: Path, quiet: bool = False, resume: bool = False,
                built: BuiltModel | None = None, where: dict[str, str] | None = None) -> dict:
    """Train and evaluate one run; always returns its leaderboard row (``status`` ok or failed).

    ``built``: the run's model as the input check built it in this process (else the run builds it);
    ``where``: facts of where it executes beyond its ``host`` (e.g. its Ray node), recorded in its row."""
    run_dir = run_folder.start(out_dir, spec)
    row, started, tracker = run_folder.base_row(spec), time.perf_counter(), None
    row.update(host=platform.node(), **(where or {}))
    runtime = Runtime.resolve(spec.train)
    with PeakMemory(runtime.device) as peak:
        try:
            tracker = open_tracker(spec, out_dir, export=export_run, resume=resume)
            row.update(_run(spec, run_dir, runtime, quiet, resume, tracker, built))
            row["status"] = "ok"
            run_folder.clear_failure(run_dir)
        except TrialPruned as exc:
            row.update(status="pruned", error=str(exc))
        except Exception as exc:
            row.update(status="failed", error=_describe_error(exc, spec, runtime))
            run_folder.record_failure(run_dir, traceback.format_exc())
    row.update(peak.row())
    if row["status"] != "ok":
        _release_memory()
    row["wall_seconds"] = round(time.perf_counter() - started, 3)
    run_folder.write_row(run_dir, row)
    if row["status"] == "ok" and not spec.train.keep_resume_state:
        run_folder.discard_resume_state(run_dir)
    if tracker is not None:
        tracker.finish(row, run_dir)
    return row


def _run(spec: RunSpec, run_dir: Path, runtime: Runtime, quiet: bool, resume: bool,
         tracker: RunTracker | None, built: BuiltModel | None) -> dict:
    """The recipe: data, model, training inputs, training, evaluation, results."""
    import_plugins(spec.plugins, spec.base_dir)
    dataset = prepare_dataset(spec)
    if spec.build is None:  # not resolved by an experiment's input check
        spec = resolve_build(spec, dataset.classes, dataset.splits["train"].labels)
        run_folder.write_config(run_dir, spec)
    model = built.take() if built is not None else model_for(spec)
    used = [name for name in dataset.splits if name in {"train", "valid", *spec.evaluation.splits}]
    arrays = {name: decoded_split(spec, dataset, name, spec.build.input_size) for name in used}
    labels = {name: dataset.splits[name].labels for name in used}
    inputs = training_sets(spec, model, arrays, labels, runtime, cache_dir(spec) if spec.data.cache else None)
    engine, result = _train(spec, inputs, runtime, run_dir, quiet, resume, tracker)
    run_folder.write_history(run_dir, result.history)
    engine.load_best()
    eval_model = inputs.full_model(engine.eval_model)
    rounded = spec.train.weights_dtype != "float32"
    if rounded:  # the predictions come from the weights the folder keeps
        eval_model.load_state_dict(run_folder.stored_weights(eval_model, spec.train.weights_dtype))
    estimates = _estimates(spec, engine, eval_model, inputs, through_images=rounded)
    scores = score_estimates(eval_model.head, estimates, {n: labels[n] for n in estimates},
                             spec.build.num_classes, spec.evaluation.bootstrap)
    weights = run_folder.stored_weights(eval_model, spec.train.weights_dtype)  # after scoring: it fits decodings
    _write_results(spec, run_dir, dataset, weights, estimates, scores, result, inputs, runtime)
    if spec.evaluation.plots:
        try_plots(write_run_plots, run_dir)
    return {**_run_facts(spec, model, result, engine), **scores.row}


def _train(spec: RunSpec, inputs: TrainingSets, runtime: Runtime, run_dir: Path, quiet: bool, resume: bool,
           tracker: RunTracker | None) -> tuple[Engine, TrainResult]:
    monitor = spec.train.early_stopping.monitor
    maximize = monitor_is_max(monitor, spec.train.early_stopping.mode)
    with RunProgress(spec.run_id, spec.train.epochs, monitor, quiet, maximize=maximize) as progress:
        engine = Engine(inputs.trained, inputs.engine_preprocessor, spec.train, spec.build.num_classes,
                        runtime=runtime, on_epoch=_chain(progress.epoch, tracker and tracker.epoch,
                                                pruning_reporter(spec.trial)),
                        on_step=progress.step, on_resume=progress.resumed)
        result = engine.fit(inputs.sets["train"], inputs.sets["valid"], spec.seed,
                            checkpoint_path=run_folder.resume_state_path(run_dir), resume=resume)
        progress.set_total(result.epochs_run)
    return engine, result


def _write_results(spec: RunSpec, run_dir: Path, dataset, weights: dict, estimates: dict, scores,
                   result: TrainResult, inputs: TrainingSets, runtime: Runtime) -> None:
    """Everything but the row: the selected weights, predictions, details and the facts plots need."""
    backbone = inputs.model.backbone
    run_folder.write_best_weights(run_dir, weights)
    for name, estimate in estimates.items():
        split = dataset.splits[name]
        run_folder.write_predictions(run_dir, name, prediction_frame(split.ids, split.labels,
                                                                     scores.predictions[name], estimate))
    rows = {name: len(dataset.splits[name]) for name in estimates}
    run_folder.write_details(run_dir, {run_folder.PREDICTION_ROWS: rows, "bootstrap": scores.details,
                                       "calibration": scores.calibration, "feature_cache": inputs.use_features,
                                       "weights": backbone.weights_report, "environment": environment(runtime)})
    run_folder.write_info(run_dir, {"mean": list(backbone.mean), "std": list(backbone.std),
                                    "best_epoch": result.best_epoch})


def _run_facts(spec: RunSpec, model: GraderModel, result: TrainResult, engine: Engine) -> dict:
    """The row's bookkeeping columns: parameters, epochs, timing, input, weights, device."""
    counts = parameter_counts(model)
    return {"params_total": counts["total"], "params_trainable": counts["trainable"],
            "params_frozen": counts["frozen"], "epochs": result.epochs_run,
            "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 3),
            "input_size": spec.build.input_size, "weights_source": model.backbone.weights_source,
            **_weights_skipped(model.backbone.weights_report),
            "device": str(engine.device), "skipped_steps": result.skipped_steps,
            "num_classes": spec.build.num_classes, "tta": tta_label(spec.evaluation.tta)}


def _release_memory() -> None:
    """Free what a failed run held (an out-of-memory run must not starve the next one)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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


def _estimates(spec: RunSpec, engine: Engine, eval_model: GraderModel, inputs: TrainingSets,
               through_images: bool = False) -> dict:
    """Each evaluated split's estimate: one forward pass, or with ``evaluation.tta`` the mean over its views.

    Views transform images, so with TTA (or ``through_images``: the backbone's weights were rounded after its
    features were cached) the whole model runs on the images even when training used cached backbone features.
    """
    head = eval_model.head
    names = [name for name in EVALUATED_SPLITS if name in spec.evaluation.splits and name in inputs.sets]
    views = build_views(spec.evaluation.tta)
    if not views and not (through_images and inputs.use_features):
        return {name: head.estimate(engine.outputs(inputs.sets[name])) for name in names}
    full, prep = eval_model.to(engine.device), inputs.preprocessor.to(engine.device)
    if not views:
        return {name: head.estimate(engine.outputs(inputs.images[name], full, prep)) for name in names}
    return {name: tta_estimate(head, views, prep, lambda view_prep, name=name: engine.outputs(
        inputs.images[name], full, view_prep), seed=spec.seed) for name in names}


def _weights_skipped(report: dict | None) -> dict:
    """``weights_skipped``: tensors a local weights file did not fill or could not place (partial loads)."""
    if report is None:
        return {}
    return {"weights_skipped": len(report["missing"]) + len(report["unexpected"]) + len(report["mismatched"])}


def environment(runtime: Runtime) -> dict:
    """Versions, device and precision, recorded with every run (``cuda``: the run's own GPU, if any)."""
    import kornia
    import timm
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "kornia": kornia.__version__, "device": str(runtime.device),
            "precision": runtime.precision,
            "cuda": torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else None,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
