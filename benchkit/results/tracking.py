"""Send runs to the trackers researchers already look at: MLflow and TensorBoard.

``tracking: {mlflow: {uri: sqlite:///mlruns.db, experiment: NAME}, tensorboard: DIR}`` in the
experiment file. For each run, MLflow gets the flattened resolved config as params, every epoch's
history row as metrics ``epoch/<name>`` (step = epoch), the final leaderboard row (metrics with their
``_lo``/``_hi`` intervals) under the leaderboard's column names, and the run folder's files as
artifacts (config, metrics, predictions, plots and, unless ``log_checkpoint: false``, ``best.safetensors`` and
the exported model under ``model/``: ``model.safetensors`` + ``config.json`` of :mod:`benchkit.inference.export`,
which load without pickled code). TensorBoard gets the same scalars under ``DIR/<run_id>`` and the
run's hyperparameters with its final metrics in the HParams dashboard. Relative paths (the SQLite file, the
TensorBoard folder) are taken inside the experiment's output folder, so every executor writes to the
same place. SQLite writes are serialised with a lock file, as several runs may log at once.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

from benchkit.config.schema import MlflowTrackingConfig, RunSpec, TrackingConfig, dump_yaml
from benchkit.errors import ConfigError
from benchkit.io import file_lock
from benchkit.progress import log_console
from benchkit.results import run_folder

RUN_FILES = (run_folder.CONFIG, run_folder.METRICS, run_folder.DETAILS, run_folder.INFO, run_folder.HISTORY,
             "predictions_valid.csv", "predictions_test.csv", run_folder.ERROR)
_NOT_METRICS = {"seed", "fold", "epoch"}
_PARAM_LIMIT = 500
_SHORT_HTTP_WAITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
"""Unless set by the user: a tracking server that does not answer costs a run seconds, not minutes."""


class RunTracker:
    """Forwards one run's config, epochs and results to every configured backend (none: a no-op).

    A tracker that fails mid-run is reported once on stderr and dropped; it never fails the run.
    """

    def __init__(self, backends: list["_Backend"], run_id: str = "run"):
        self.backends, self.run_id = backends, run_id
        self._sent: dict[int, set[int]] = {id(b): set() for b in backends}

    def epoch(self, row: dict) -> None:
        """Log one epoch's history row (the engine's ``on_epoch`` callback)."""
        metrics, epoch = _numeric(row, exclude={"epoch"}), int(row["epoch"])
        for backend in list(self.backends):
            if self._safely(backend, backend.log_epoch, epoch, metrics):
                self._sent[id(backend)].add(epoch)

    def finish(self, row: dict, run_dir: Path) -> None:
        """Log epochs not sent live (a resumed run's earlier ones), the final row and the run's files."""
        frame = run_folder.read_history(run_dir)
        history = [] if frame is None else frame.to_dict("records")
        for backend in list(self.backends):
            for earlier in history:
                epoch = int(earlier["epoch"])
                if epoch not in self._sent[id(backend)]:
                    self._safely(backend, backend.log_epoch, epoch,
                                 _numeric(earlier, exclude={"epoch"}))
            self._safely(backend, backend.finish, row, Path(run_dir))

    def _safely(self, backend: "_Backend", call, *args) -> bool:
        if backend not in self.backends:
            return False
        try:
            call(*args)
            return True
        except Exception as exc:
            self.backends.remove(backend)
            log_console.print(f"[yellow]{self.run_id}: {backend.name} logging stopped: "
                              f"{type(exc).__name__}: {exc}[/]")
            return False


def open_tracker(spec: RunSpec, out_dir: Path, export: Callable[[Path, Path], Path] | None = None) -> RunTracker:
    """Start tracking one run as its ``tracking`` section asks (paths relative to ``out_dir``).

    ``export(run_dir, folder)`` writes the finished run as a model folder (:func:`benchkit.inference.export.export_run`);
    MLflow logs it as the run's ``model/`` artifacts when given.
    """
    config: TrackingConfig = spec.tracking
    openers: list[tuple[str, Callable[[], _Backend]]] = []
    if config.mlflow is not None:
        openers.append(("MLflow", lambda: _MlflowBackend(spec, config.mlflow, Path(out_dir), export)))
    if config.tensorboard is not None:
        openers.append(("TensorBoard", lambda: _TensorBoardBackend(spec, _inside(config.tensorboard, Path(out_dir)))))
    backends: list[_Backend] = []
    for name, opener in openers:
        try:
            backends.append(opener())
        except ConfigError:
            raise
        except Exception as exc:  # a server that does not answer: the run goes on without it
            log_console.print(f"[yellow]{spec.run_id}: {name} logging not started: {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]}[/]")
    return RunTracker(backends, spec.run_id)


def _tags(spec: RunSpec) -> dict[str, str]:
    """A run's MLflow tags; a tuning trial's also name its study and number, a tuned run its study."""
    tags = {"benchkit.run_id": spec.run_id, "benchkit.execution.experiment": spec.experiment,
            "benchkit.model": spec.model_name, "benchkit.seed": str(spec.seed)}
    if spec.trial is not None:
        tags.update({"benchkit.study": spec.trial.study, "benchkit.trial": str(spec.trial.number)})
    if spec.tuned is not None:
        tags.update({"benchkit.study": spec.tuned.study, "benchkit.tuned": "true"})
    return tags


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings -> ``{"a.b.c": "value"}`` (lists and scalars as text)."""
    if isinstance(data, dict):
        flat = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): "" if data is None else str(data)}


def resolve_mlflow_uri(uri: str, out_dir: Path) -> str:
    """A relative ``sqlite:///file.db`` or plain folder becomes absolute inside ``out_dir``."""
    if uri.startswith("sqlite:///"):
        return "sqlite:///" + str(_inside(Path(uri[len("sqlite:///"):]), out_dir))
    if "://" not in uri and not uri.startswith("file:"):
        return str(_inside(Path(uri), out_dir))
    return uri


class _Backend:
    name = "tracker"

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, row: dict, run_dir: Path) -> None:
        raise NotImplementedError


class _MlflowBackend(_Backend):
    name = "MLflow"

    def __init__(self, spec: RunSpec, config: MlflowTrackingConfig, out_dir: Path,
                 export: Callable[[Path, Path], Path] | None = None):
        self.export = export
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("tracking.mlflow needs MLflow: pip install 'benchkit[mlflow]'") from None
        self.config = config
        self.uri = resolve_mlflow_uri(config.uri, out_dir)
        if self.uri.startswith(("http://", "https://")):
            for key, value in _SHORT_HTTP_WAITS.items():  # MLflow's defaults wait minutes for a server that is gone
                os.environ.setdefault(key, value)
        self.db_path = Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment_id = self._experiment_id(config.experiment or spec.experiment)
            run = self.client.create_run(experiment_id, run_name=spec.run_id, tags=_tags(spec))
            self.run_id = run.info.run_id
            self._log(params=flatten(spec.model_dump(mode="json")))

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = self.config.artifact_location
        if location is None and self.db_path is not None:
            location = (self.db_path.parent / "mlartifacts").resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        with self._locked():
            self._log(metrics={f"epoch/{k}": v for k, v in metrics.items()}, step=epoch)

    def finish(self, row: dict, run_dir: Path) -> None:
        with self._locked():
            self._log(metrics=_numeric(row, exclude=_NOT_METRICS))
            self.client.set_tag(self.run_id, "benchkit.status", str(row.get("status")))
            if row.get("error"):
                self.client.set_tag(self.run_id, "benchkit.error", str(row["error"])[:5000])
            for name in RUN_FILES:
                if (run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(run_dir / name))
            if (run_dir / "plots").is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / "plots"), artifact_path="plots")
            weights = run_folder.best_weights_path(run_dir)
            if self.config.log_checkpoint and weights is not None:
                self.client.log_artifact(self.run_id, str(weights), artifact_path="checkpoint")
                if row.get("status") == "ok" and self.export is not None:
                    self._log_model(run_dir)
            self.client.set_terminated(self.run_id, status="FINISHED" if row.get("status") == "ok" else "FAILED")

    def _log_model(self, run_dir: Path) -> None:
        """The run exported (safetensors + config.json) as the MLflow run's ``model/`` artifacts."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            self.client.log_artifacts(self.run_id, str(self.export(run_dir, Path(folder))), artifact_path="model")

    def _log(self, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
             step: int = 0) -> None:
        from mlflow.entities import Metric, Param
        now = int(time.time() * 1000)
        metric_items = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        param_items = [Param(k, v if len(v) <= _PARAM_LIMIT else v[:_PARAM_LIMIT - 3] + "...")
                       for k, v in (params or {}).items()]
        for i in range(0, max(len(metric_items), len(param_items)), 100):
            self.client.log_batch(self.run_id, metrics=metric_items[i:i + 100], params=param_items[i:i + 100])

    def _locked(self):
        return file_lock(self.db_path.with_name(self.db_path.name + ".lock")) if self.db_path else nullcontext()


class _TensorBoardBackend(_Backend):
    name = "TensorBoard"

    def __init__(self, spec: RunSpec, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tracking.tensorboard needs TensorBoard: pip install 'benchkit[tensorboard]'") from None
        self.spec = spec
        self.writer = SummaryWriter(log_dir=str(log_dir / spec.run_id))
        self.writer.add_text("config", "```\n" + dump_yaml(spec.model_dump(mode="json")) + "\n```", 0)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()

    def finish(self, row: dict, run_dir: Path) -> None:
        for key, value in _numeric(row, exclude=_NOT_METRICS).items():
            self.writer.add_scalar(f"final/{key}", value, 0)
        self.writer.add_text("status", f"{row.get('status')} {row.get('error') or ''}".strip(), 0)
        if row.get("status") == "ok":
            final = {f"hparam/{k}": v for k, v in _numeric(row, exclude=_NOT_METRICS).items()
                     if k.startswith(("valid_", "test_")) and not k.endswith(("_lo", "_hi"))}
            self.writer.add_hparams(hparams(self.spec), final, run_name=".")
        self.writer.close()


def hparams(spec: RunSpec) -> dict[str, Any]:
    """What identifies a run in TensorBoard's HParams table: model, head, seed, grid values and the recipe."""
    values = {"model": spec.model_name, "backbone": spec.model.backbone.name, "head": spec.model.head.name,
              "seed": spec.seed, "split": spec.split, "fold": spec.fold, **spec.grid,
              "lr": spec.train.optimizer.lr, "batch_size": spec.train.batch_size, "epochs": spec.train.epochs}
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in values.items()}


def _numeric(row: dict, exclude: set[str]) -> dict[str, float]:
    """The finite numbers of a row (booleans and text left out)."""
    out = {}
    for key, value in row.items():
        if key in exclude or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def _inside(path: Path, out_dir: Path) -> Path:
    path = Path(path)
    return (path if path.is_absolute() else Path(out_dir) / path).resolve()


