"""A run's folder ``<out>/runs/<run_id>/``: the one place that names its files, writes and reads them.

- ``config.yaml``: the resolved run (:class:`~benchkit.config.schema.RunSpec`, build inputs included);
- ``history.csv``: one row per epoch; ``predictions_<split>.csv``: one row per evaluated image;
- ``best.pt``: the selected weights and what prediction needs; ``last.pt``: the resumable checkpoint;
- ``details.json``: bootstrap intervals, calibration, feature cache, weights report, environment;
- ``run.json``: the few facts plots and the report need (class names, input size, normalisation,
  selected epoch, monitored metric), so they never open a checkpoint;
- ``metrics.json``: the leaderboard row, written last: a run is finished when it says ``status: ok``;
- ``error.log``: the traceback of a failed attempt; ``plots/``: the run's plots; ``.lock``: the claim of
  the process running it.

The rows and facts this process writes are kept with the file's size and modification time, and every
file is parsed at most once per version, so the leaderboard, the plots and the paired tests that read
the folders again after each run parse only what changed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd

from benchkit.config.schema import RunSpec, dump_yaml
from benchkit.errors import DataError
from benchkit.results import results_folder
from benchkit.io import atomic_path, read_json, read_yaml, save_torch, write_json, write_text

CONFIG = "config.yaml"
HISTORY = "history.csv"
BEST = "best.pt"
LAST = "last.pt"
DETAILS = "details.json"
INFO = "run.json"
METRICS = "metrics.json"
ERROR = "error.log"
PLOTS = "plots"
LOCK = ".lock"
RESULT_FILES = (METRICS, BEST, HISTORY, DETAILS, INFO, "predictions_*.csv")
"""What a finished attempt leaves; a failed attempt removes them (``last.pt`` stays, to resume)."""

_KNOWN: dict[str, tuple[tuple[int, int], Any]] = {}


def run_dir_of(out_dir: Path, run_id: str) -> Path:
    """``<out>/runs/<run_id>`` (:func:`benchkit.results.results_folder.run_dir`)."""
    return results_folder.run_dir(out_dir, run_id)


def predictions_file(run_dir: Path, split: str) -> Path:
    return Path(run_dir) / f"predictions_{split}.csv"


def base_row(spec: RunSpec) -> dict:
    """The identifying columns of a run's leaderboard row."""
    row = {"run_id": spec.run_id, "model": spec.model_name, "backbone": spec.model.backbone.name,
           "head": spec.model.head.name, "seed": spec.seed, "split": spec.split, "fold": spec.fold}
    row.update(spec.grid)
    row.update(status="pending", error="")
    return row


# ---------------------------------------------------------------- writing

def start(out_dir: Path, spec: RunSpec) -> Path:
    """Create the run's folder and write its config; return the folder."""
    run_dir = run_dir_of(out_dir, spec.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, spec)
    return run_dir


def write_config(run_dir: Path, spec: RunSpec) -> None:
    write_text(Path(run_dir) / CONFIG, dump_yaml(spec.model_dump(mode="json")))


def write_history(run_dir: Path, history: list[dict]) -> None:
    _write_frame(Path(run_dir) / HISTORY, pd.DataFrame(history))


def write_predictions(run_dir: Path, split: str, frame: pd.DataFrame) -> None:
    _write_frame(predictions_file(run_dir, split), frame)


def write_best(run_dir: Path, checkpoint: dict) -> None:
    save_torch(Path(run_dir) / BEST, checkpoint)


def write_details(run_dir: Path, details: dict) -> None:
    write_json(Path(run_dir) / DETAILS, details)


def write_info(run_dir: Path, info: dict) -> None:
    """``run.json``: ``classes``, ``input_size``, ``mean``, ``std``, ``best_epoch``, ``monitor``."""
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
    """Remove a run's result files (not its checkpoint ``last.pt``), so none outlives a failed attempt."""
    for pattern in RESULT_FILES:
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- reading

def read_row(run_dir: Path) -> dict | None:
    """The row a finished (or failed) run wrote, or None if it has not finished."""
    content = _recall(Path(run_dir) / METRICS, read_json)
    return None if content is None else content.get("row")


def read_info(run_dir: Path) -> dict:
    """``run.json``; for folders written before it, the same facts from ``config.yaml`` and ``metrics.json``."""
    info = _recall(Path(run_dir) / INFO, read_json)
    if info is not None:
        return info
    config = read_config(run_dir)
    build = config.get("build") or {}
    monitor = ((config.get("train") or {}).get("early_stopping") or {}).get("monitor", "loss")
    return {"classes": build.get("classes"), "input_size": build.get("input_size"),
            "best_epoch": (read_row(run_dir) or {}).get("best_epoch"), "monitor": monitor}


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
    _KNOWN[str(path)] = ((stat.st_mtime_ns, stat.st_size), content)


def _recall(path: Path, read):
    """The file's content, parsed at most once per version of the file in this process; None if absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    known = _KNOWN.get(str(path))
    if known is None or known[0] != (stat.st_mtime_ns, stat.st_size):
        _keep(path, read(path))
        known = _KNOWN[str(path)]
    return copy.deepcopy(known[1])
