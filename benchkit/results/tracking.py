"""Send runs to the trackers researchers already look at, MLflow and TensorBoard, and keep what they received.

``tracking: {mlflow: {uri: sqlite:///mlruns.db, experiment: NAME}, tensorboard: DIR}`` in the experiment file
(:mod:`~benchkit.results.mlflow_tracking`, :mod:`~benchkit.results.tensorboard_tracking`). Relative paths (the
SQLite file, the TensorBoard folder) are taken inside the experiment's output folder, so every executor writes
to the same place.

Tracking never fails a run: a tracker that does not answer or fails mid-run is dropped for that run. The run's
tracking record (``tracking.json`` in its folder) says for each tracker whether it received the whole run, and
which MLflow run holds it. At the end of a grid one warning names the runs a tracker did not fully receive
(:func:`tracking_warning`); running the experiment again sends them from their files, without training
(:func:`complete_tracking`), into the same MLflow runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from pydantic import ValidationError

from benchkit.config.schema import RunSpec, TrackingConfig
from benchkit.errors import ConfigError
from benchkit.io import read_json, write_json
from benchkit.results import run_folder
from benchkit.results.mlflow_tracking import MlflowBackend, flatten, resolve_mlflow_uri
from benchkit.results.tensorboard_tracking import TensorBoardBackend, hparams
from benchkit.results.tracking_backend import RUN_FILES, TrackerBackend, inside, numeric

__all__ = ["RUN_FILES", "RunTracker", "TRACKER_NAMES", "complete_tracking", "flatten", "hparams", "open_tracker",
           "read_record", "resolve_mlflow_uri", "tracking_warning", "untracked"]

TRACKER_NAMES = {"mlflow": "MLflow", "tensorboard": "TensorBoard"}
"""The trackers of the ``tracking`` section, as messages name them."""
_NAMED_RUNS = 20
"""Runs the warning names one by one (then: "and N more")."""


class RunTracker:
    """Forwards one run's config, epochs and results to every configured backend (none: a no-op).

    A tracker that fails mid-run is dropped; it never fails the run. With ``run_dir`` the run's tracking record
    says what each tracker received; ``record`` holds the entries of trackers not opened (with their error).
    """

    def __init__(self, backends: list[TrackerBackend], run_id: str = "run", run_dir: Path | None = None,
                 record: dict[str, dict] | None = None):
        self.backends, self.run_id, self.run_dir = list(backends), run_id, run_dir
        self.record = dict(record or {})
        self.record.update({b.key: {"complete": False, **b.record()} for b in self.backends})
        self._sent: dict[int, set[int]] = {id(b): set() for b in self.backends}

    def start(self) -> None:
        """Keep the record (which MLflow run this attempt writes to), then send the config."""
        self._save()
        for backend in list(self.backends):
            self._safely(backend, backend.start)

    def epoch(self, row: dict) -> None:
        """Log one epoch's history row (the engine's ``on_epoch`` callback)."""
        metrics, epoch = numeric(row, exclude={"epoch"}), int(row["epoch"])
        for backend in list(self.backends):
            if self._safely(backend, backend.log_epoch, epoch, metrics):
                self._sent[id(backend)].add(epoch)

    def finish(self, row: dict, run_dir: Path) -> None:
        """Log epochs not sent live (a resumed run's earlier ones), the final row and the run's files; record
        which trackers received it all."""
        try:
            frame = run_folder.read_history(run_dir)
        except Exception:  # a history file edited by hand: the trackers get the rest
            frame = None
        history = [] if frame is None else frame.to_dict("records")
        for backend in list(self.backends):
            for earlier in history:
                epoch = int(earlier["epoch"])
                if epoch not in self._sent[id(backend)]:
                    self._safely(backend, backend.log_epoch, epoch, numeric(earlier, exclude={"epoch"}))
            self._safely(backend, backend.finish, row, Path(run_dir))
        for backend in self.backends:
            self.record[backend.key] = {"complete": True, **backend.record()}
        self._save()

    def _safely(self, backend: TrackerBackend, call, *args) -> bool:
        if backend not in self.backends:
            return False
        try:
            call(*args)
            return True
        except Exception as exc:
            self.backends.remove(backend)
            self.record[backend.key] = {**self.record.get(backend.key, {}), "complete": False,
                                        "error": _describe(exc)}
            self._save()
            return False

    def _save(self) -> None:
        if self.run_dir is not None and self.record:
            try:
                write_json(Path(self.run_dir) / run_folder.TRACKING, self.record)
            except OSError:  # a full disk fails the run elsewhere; tracking does not
                pass


def open_tracker(spec: RunSpec, out_dir: Path, export: Callable[[Path, Path], Path] | None = None,
                 resume: bool = False, only: Iterable[str] | None = None) -> RunTracker:
    """Start tracking one run as its ``tracking`` section asks (paths relative to ``out_dir``).

    ``export(run_dir, folder)`` writes the finished run as a model folder
    (:func:`benchkit.inference.export.export_run`); MLflow logs it as the run's ``model/`` artifacts when given.
    ``resume``: continue the MLflow run of the
    attempt the run's tracking record names; ``only``: the trackers to open (the others' entries are kept).
    """
    config: TrackingConfig = spec.tracking
    run_dir = run_folder.folder_of(out_dir, spec)
    earlier = read_record(run_dir) if resume else {}
    chosen = set(TRACKER_NAMES if only is None else only)
    record = {key: entry for key, entry in earlier.items() if key not in chosen}
    openers: dict[str, Callable[[], TrackerBackend]] = {}
    if config.mlflow is not None:
        openers["mlflow"] = lambda: MlflowBackend(spec, config.mlflow, Path(out_dir), export, earlier.get("mlflow"))
    if config.tensorboard is not None:
        openers["tensorboard"] = lambda: TensorBoardBackend(spec, inside(config.tensorboard, Path(out_dir)))
    backends: list[TrackerBackend] = []
    for key, opener in openers.items():
        if key not in chosen:
            continue
        try:
            backends.append(opener())
        except ConfigError:
            raise
        except Exception as exc:  # a server that does not answer: the run goes on without it
            record[key] = {**earlier.get(key, {}), "complete": False, "error": _describe(exc)}
    tracker = RunTracker(backends, spec.run_id, run_dir, record)
    tracker.start()
    return tracker


def read_record(run_dir: Path) -> dict[str, dict]:
    """The run's tracking record: per tracker ``complete`` and what continues it (empty when absent)."""
    try:
        record = read_json(Path(run_dir) / run_folder.TRACKING)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def untracked(run_dir: Path, config: TrackingConfig) -> dict[str, str]:
    """The trackers ``config`` names that did not receive all of the run in ``run_dir``, with their error."""
    configured = {key for key in TRACKER_NAMES if getattr(config, key) is not None}
    if not configured:  # no tracking: no record to read
        return {}
    return {key: str(entry.get("error") or "") for key, entry in read_record(run_dir).items()
            if key in configured and isinstance(entry, dict) and not entry.get("complete")}


def complete_tracking(spec: RunSpec, out_dir: Path, export: Callable[[Path, Path], Path] | None = None,
                      only: Iterable[str] | None = None) -> dict[str, str]:
    """Send a finished run to the trackers that did not receive all of it, from its files (no training), into
    the MLflow run its record names; return those that still did not (with their error)."""
    run_dir = run_folder.folder_of(out_dir, spec)
    gaps = untracked(run_dir, spec.tracking)
    missing = [key for key in gaps if only is None or key in only]
    row = run_folder.read_row(run_dir) if missing else None
    if row is None:
        return gaps
    try:
        tracker = open_tracker(_as_saved(spec, run_dir), out_dir, export, resume=True, only=missing)
    except ConfigError as exc:  # e.g. MLflow uninstalled since: the run stays as it is
        return {key: str(exc) for key in missing}
    tracker.finish(row, run_dir)
    return untracked(run_dir, spec.tracking)


def tracking_warning(specs: Iterable[RunSpec], out_dir: Path) -> str | None:
    """One warning naming the runs a tracker did not fully receive; None when every tracker has every run."""
    gaps: dict[str, list[tuple[str, str]]] = {}
    for spec in specs:
        for key, error in untracked(run_folder.folder_of(out_dir, spec), spec.tracking).items():
            gaps.setdefault(key, []).append((spec.run_id, error))
    if not gaps:
        return None
    parts = []
    for key, items in gaps.items():
        names = [run_id for run_id, _ in items]
        shown = ", ".join(names[:_NAMED_RUNS]) + (f" and {len(names) - _NAMED_RUNS} more"
                                                  if len(names) > _NAMED_RUNS else "")
        error = next((error for _, error in items if error), "")
        parts.append(f"{TRACKER_NAMES.get(key, key)} did not receive all of {len(names)} run(s): {shown}"
                     + (f" ({error})" if error else ""))
    return ("; ".join(parts) + ". Their results are complete on disk: run the same command again once the "
            "tracker answers, and it sends them from their files, without training.")


def _as_saved(spec: RunSpec, run_dir: Path) -> RunSpec:
    """The run as its folder saved it (with its resolved build inputs), tracked as ``spec`` asks now."""
    try:
        saved = RunSpec.model_validate(run_folder.read_config(run_dir))
    except (ValidationError, ValueError, TypeError):
        return spec
    return saved.model_copy(update={"tracking": spec.tracking, "experiment": spec.experiment})


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= 200 else text[:197] + "..."
