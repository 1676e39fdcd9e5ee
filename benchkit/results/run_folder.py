"""A run's folder ``<out>/runs/<run_id>/``: the one place that names its files, writes and reads them.

- ``config.yaml``: the resolved run (:class:`~benchkit.config.schema.RunSpec`, build inputs included): the
  one owner of the class names, the input size and the monitored metric;
- ``history.csv``: one row per epoch; ``predictions_<split>.csv``: one row per evaluated image;
- ``best.safetensors``: the selected weights, tensors only (the ones the predictions came from);
- ``last.pt``: the resume state (weights, optimizer, scheduler, scaler, EMA copy, RNG state), kept while the
  run trains and after it fails or is interrupted; removed when it ends well (``train.keep_resume_state``
  keeps it);
- ``details.json``: bootstrap intervals, calibration, feature cache, weights report, environment;
- ``run.json``: what is known only once the model is built and trained (normalisation, selected epoch);
  :func:`read_info` adds the facts ``config.yaml`` owns, so plots and the report never open a checkpoint;
- ``metrics.json``: the leaderboard row, written last: a run is finished when it says ``status: ok``;
- ``error.log``: the traceback of a failed attempt; ``plots/``: the run's plots; ``.lock``: the claim of
  the process running it;
- ``tracking.json``: what each tracker received (:mod:`benchkit.results.tracking`), kept across attempts.

Folders written by earlier versions hold ``best.pt`` (the weights with a copy of those facts) instead of
``best.safetensors``, and a ``run.json`` that repeats ``config.yaml``; both are still read.

The rows and facts this process writes are kept with the file's size and modification time, and every
file is parsed at most once per version, so the leaderboard, the plots and the paired tests that read
the folders again after each run parse only what changed.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchkit.config.schema import RunSpec, dump_yaml
from benchkit.config.tuning import tuned_column
from benchkit.errors import WeightsError
from benchkit.errors import DataError
from benchkit.results import results_folder
from benchkit.io import (atomic_path, read_json, read_tensors_file, read_torch_file, read_yaml, save_tensors,
                         write_json, write_text)
from benchkit.memo import Memo

CONFIG = "config.yaml"
HISTORY = "history.csv"
BEST_WEIGHTS = "best.safetensors"
LEGACY_BEST = "best.pt"
RESUME_STATE = "last.pt"
DETAILS = "details.json"
INFO = "run.json"
METRICS = "metrics.json"
ERROR = "error.log"
PLOTS = "plots"
LOCK = ".lock"
TRACKING = "tracking.json"
RESULT_FILES = (METRICS, BEST_WEIGHTS, LEGACY_BEST, HISTORY, DETAILS, INFO, "predictions_*.csv")
"""What a finished attempt leaves; a failed attempt removes them (the resume state stays, to resume)."""
WEIGHTS_FORMAT = "benchkit-run-weights/1"
LEGACY_FACTS = ("classes", "input_size", "mean", "std")
"""What ``best.pt`` of earlier versions holds beside the weights (``model``)."""

_KNOWN = Memo("run-files", maxsize=4096)
"""Parsed run files by path, with the version (mtime, size) they were parsed from."""


def run_dir_of(out_dir: Path, run_id: str) -> Path:
    """``<out>/runs/<run_id>`` (:func:`benchkit.results.results_folder.run_dir`)."""
    return results_folder.run_dir(out_dir, run_id)


def folder_of(out_dir: Path, spec: RunSpec) -> Path:
    """Where ``spec`` writes: ``runs/<run_id>``, or a tuning trial's folder under ``trials/``."""
    if spec.trial is not None:
        return results_folder.trial_dir(out_dir, spec.trial.study, spec.trial.number)
    return run_dir_of(out_dir, spec.run_id)


def predictions_file(run_dir: Path, split: str) -> Path:
    return Path(run_dir) / f"predictions_{split}.csv"


def base_row(spec: RunSpec) -> dict:
    """The identifying columns of a run's leaderboard row."""
    row = {"run_id": spec.run_id, "model": spec.model_name, "backbone": spec.model.backbone.name,
           "head": spec.model.head.name, "seed": spec.seed, "split": spec.split, "fold": spec.fold}
    row.update(spec.grid)
    if spec.tuned is not None:
        row.update(tuning_budget=spec.tuned.budget, tuning_trials=spec.tuned.trials,
                   **{tuned_column(path): value for path, value in spec.tuned.params.items()})
    if spec.trial is not None:
        row.update(study=spec.trial.study, trial=spec.trial.number)
    row.update(status="pending", error="")
    return row


# ---------------------------------------------------------------- writing

def start(out_dir: Path, spec: RunSpec) -> Path:
    """Create the run's folder and write its config; return the folder."""
    run_dir = folder_of(out_dir, spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, spec)
    return run_dir


def write_config(run_dir: Path, spec: RunSpec) -> None:
    write_text(Path(run_dir) / CONFIG, dump_yaml(spec.model_dump(mode="json")))


def write_history(run_dir: Path, history: list[dict]) -> None:
    _write_frame(Path(run_dir) / HISTORY, pd.DataFrame(history))


def write_predictions(run_dir: Path, split: str, frame: pd.DataFrame) -> None:
    _write_frame(predictions_file(run_dir, split), frame)


def stored_weights(model: nn.Module, dtype: str = "float32") -> dict[str, torch.Tensor]:
    """``model``'s state dict as the run folder stores it: contiguous CPU copies, the parameters in ``dtype``
    (``float16``/``bfloat16`` halve the file), buffers (e.g. BatchNorm statistics) in their own type."""
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    target = getattr(torch, dtype)
    return {name: tensor.detach().to("cpu", dtype=target if name in parameters and tensor.is_floating_point()
                                      else tensor.dtype).clone().contiguous()
            for name, tensor in model.state_dict().items()}


def write_best_weights(run_dir: Path, tensors: dict[str, torch.Tensor]) -> None:
    """``best.safetensors``: the selected weights (see :func:`stored_weights`)."""
    save_tensors(Path(run_dir) / BEST_WEIGHTS, tensors, metadata={"format": WEIGHTS_FORMAT})


def write_details(run_dir: Path, details: dict) -> None:
    write_json(Path(run_dir) / DETAILS, details)


def write_info(run_dir: Path, info: dict) -> None:
    """``run.json``: ``mean``, ``std``, ``best_epoch`` (the facts ``config.yaml`` does not own)."""
    _remember(Path(run_dir) / INFO, info, write_json)


def write_row(run_dir: Path, row: dict) -> None:
    """The run's leaderboard row, as ``metrics.json`` (written last)."""
    _remember(Path(run_dir) / METRICS, {"row": row}, write_json)


def record_failure(run_dir: Path, traceback_text: str) -> None:
    """Write ``error.log`` and remove the result files of the failed attempt."""
    write_text(Path(run_dir) / ERROR, traceback_text)
    discard_results(run_dir)


def clear_failure(run_dir: Path) -> None:
    (Path(run_dir) / ERROR).unlink(missing_ok=True)


def discard_results(run_dir: Path) -> None:
    """Remove a run's result files (not its resume state), so none outlives a failed attempt."""
    for pattern in RESULT_FILES:
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)


def has_resume_state(run_dir: Path) -> bool:
    return (Path(run_dir) / RESUME_STATE).is_file()


def resume_state_path(run_dir: Path) -> Path:
    return Path(run_dir) / RESUME_STATE


def discard_resume_state(run_dir: Path) -> int:
    """Remove the resume state; return the bytes freed.

    Only for a finished run (:func:`is_finished`): an unfinished one needs its resume state to resume."""
    path = resume_state_path(run_dir)
    try:
        freed = path.stat().st_size
    except FileNotFoundError:
        return 0
    path.unlink(missing_ok=True)
    return freed


# ---------------------------------------------------------------- reading

def read_row(run_dir: Path) -> dict | None:
    """The row a finished (or failed) run wrote, or None if it has not finished."""
    content = _recall(Path(run_dir) / METRICS, read_json)
    return None if content is None else content.get("row")


def is_finished(run_dir: Path) -> bool:
    """The run's ``metrics.json`` says ``status: ok`` (a failed or interrupted run is not finished)."""
    return (read_row(run_dir) or {}).get("status") == "ok"


def read_info(run_dir: Path) -> dict:
    """The run's facts: ``classes``, ``input_size``, ``monitor`` (from ``config.yaml``), ``mean``, ``std``,
    ``best_epoch`` (from ``run.json``; ``best_epoch`` from ``metrics.json`` for folders without it)."""
    info = _recall(Path(run_dir) / INFO, read_json) or {}
    config = read_config(run_dir)
    build = config.get("build") or {}
    owned = {"classes": build.get("classes"), "input_size": build.get("input_size"),
             "monitor": ((config.get("train") or {}).get("early_stopping") or {}).get("monitor")}
    info.update({key: value for key, value in owned.items() if value is not None})
    info.setdefault("monitor", "loss")
    if info.get("best_epoch") is None:
        info["best_epoch"] = (read_row(run_dir) or {}).get("best_epoch")
    return info


def best_weights_path(run_dir: Path) -> Path | None:
    """``best.safetensors``, else the ``best.pt`` of an earlier version; None when the run has neither."""
    for name in (BEST_WEIGHTS, LEGACY_BEST):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def read_best(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The selected weights and the run's facts (:func:`read_info`; from ``best.pt`` where an earlier version
    kept them there). A WeightsError when the weights file is missing, unreadable or not benchkit's."""
    path, info = best_weights_path(run_dir), read_info(run_dir)
    if path is None:
        raise WeightsError(f"{run_dir}: no {BEST_WEIGHTS} (is this a finished run folder?)")
    if path.name == BEST_WEIGHTS:
        return read_tensors_file(path), info
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in ("model", *LEGACY_FACTS)):
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise WeightsError(f"{path}: not a checkpoint written by benchkit run (it holds "
                           f"{', '.join(('model', *LEGACY_FACTS))}; this file holds {found})")
    kept = {key: checkpoint[key] for key in LEGACY_FACTS}
    return checkpoint["model"], {**kept, **{key: value for key, value in info.items() if value is not None}}


def read_config(run_dir: Path) -> dict:
    """The run's config as plain data (empty when absent)."""
    return _recall(Path(run_dir) / CONFIG, read_yaml) or {}


def read_details(run_dir: Path) -> dict:
    """``details.json`` (empty when absent)."""
    return _recall(Path(run_dir) / DETAILS, read_json) or {}


def read_predictions(run_dir: Path, split: str) -> pd.DataFrame | None:
    """The run's predictions on ``split`` (None when absent); a DataError naming the file when it is cut short
    or edited (unparsable, empty values, another row count than was written)."""
    return _recall(predictions_file(run_dir, split), _checked_predictions)


def read_history(run_dir: Path) -> pd.DataFrame | None:
    return _recall(Path(run_dir) / HISTORY, pd.read_csv)


def read_table(path: Path) -> pd.DataFrame | None:
    """Any CSV of an output folder (e.g. an ensemble's predictions), parsed once per version; a predictions
    file is checked as :func:`read_predictions` checks it."""
    path = Path(path)
    return _recall(path, _checked_predictions if path.name.startswith("predictions_") else pd.read_csv)


PREDICTION_COLUMNS = ("image", "target", "pred", "score")
PREDICTION_ROWS = "prediction_rows"
"""The key of ``details.json`` that records how many rows each predictions file was written with."""


def _checked_predictions(path: Path) -> pd.DataFrame:
    """A predictions file, or a DataError naming it when it is cut short or edited: unparsable, a column or a
    value missing, or fewer/more rows than ``details.json`` says were written."""
    redo = "; run this run again (benchkit run --fresh, or delete its folder and re-run)"
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable predictions file ({' '.join(str(exc).split())}){redo}") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in frame]
    if missing:
        raise DataError(f"{path}: columns {missing} are missing (truncated or edited by hand){redo}")
    blank = frame[frame.drop(columns="image").isna().any(axis=1) | frame["image"].isna()]
    if len(blank):
        raise DataError(f"{path}: row {int(blank.index[0]) + 2} has empty values (truncated or edited by hand){redo}")
    split = path.stem[len("predictions_"):]
    written = (_recall(path.parent / DETAILS, read_json) or {}).get(PREDICTION_ROWS, {}).get(split)
    if written is not None and written != len(frame):
        raise DataError(f"{path}: {len(frame)} rows, but {written} were written (truncated or edited by hand){redo}")
    return frame


def file_version(path: Path) -> tuple[str, int, int]:
    """``(path, mtime_ns, size)``: what identifies a version of a result file."""
    stat = Path(path).stat()
    return str(path), stat.st_mtime_ns, stat.st_size


# ---------------------------------------------------------------- what this process wrote or read

def _write_frame(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _remember(path: Path, content, write) -> None:
    """Write JSON-like ``content`` and keep it: it reads back exactly as written."""
    write(path, content)
    _keep(path, copy.deepcopy(content))


def _keep(path: Path, content) -> None:
    stat = path.stat()
    _KNOWN.put(str(path), ((stat.st_mtime_ns, stat.st_size), content))


def _recall(path: Path, read):
    """The file's content, parsed at most once per version of the file in this process; None if absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    known = _KNOWN.peek(str(path))
    if known is None or known[0] != (stat.st_mtime_ns, stat.st_size):
        _keep(path, read(path))
        known = _KNOWN.peek(str(path))
    return copy.deepcopy(known[1])


_RENAMED = {"BEST": "BEST_WEIGHTS", "LAST": "RESUME_STATE"}


def __getattr__(name: str):
    """The 0.1 names of the weights files, kept with a DeprecationWarning."""
    if name in _RENAMED:
        import warnings
        warnings.warn(f"run_folder.{name} is deprecated; use run_folder.{_RENAMED[name]} "
                      f"(BEST is now {BEST_WEIGHTS!r}; {LEGACY_BEST!r} folders still load)",
                      DeprecationWarning, stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
