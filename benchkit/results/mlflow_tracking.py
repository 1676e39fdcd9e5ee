"""A run sent to MLflow: a SQLite file, a folder or a tracking server (``tracking.mlflow``).

MLflow gets the flattened resolved config as params, every epoch's history row as metrics ``epoch/<name>``
(step = epoch), the final leaderboard row (metrics with their ``_lo``/``_hi`` intervals) under the
leaderboard's column names, and the run folder's files as artifacts (config, metrics, predictions, plots and,
unless ``log_checkpoint: false``, ``best.safetensors`` and the exported model under ``model/``:
``model.safetensors`` + ``config.json`` of :mod:`benchkit.inference.export`, which load without pickled code).
SQLite writes are serialised with a lock file, as several runs may log at once.

An attempt that continues an earlier one (a resumed run, or a finished run whose logging was cut short) sends
to the earlier MLflow run only what it does not hold yet, so nothing is logged twice.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

from benchkit.config.schema import MlflowTrackingConfig, RunSpec
from benchkit.errors import ConfigError
from benchkit.io import file_lock
from benchkit.results import run_folder
from benchkit.results.tracking_backend import NOT_METRICS, RUN_FILES, TrackerBackend, inside, numeric

_PARAM_LIMIT = 500
_SHORT_HTTP_WAITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
"""Unless set by the user: a tracking server that does not answer costs a run seconds, not minutes."""


class MlflowBackend(TrackerBackend):
    """One run as an MLflow run; ``earlier`` (the run's tracking record entry) names an MLflow run to continue."""

    name, key = "MLflow", "mlflow"

    def __init__(self, spec: RunSpec, config: MlflowTrackingConfig, out_dir: Path,
                 export: Callable[[Path, Path], Path] | None = None, earlier: dict | None = None):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("tracking.mlflow needs MLflow: pip install 'benchkit[mlflow]'") from None
        self.spec, self.config, self.export = spec, config, export
        self.uri = resolve_mlflow_uri(config.uri, out_dir)
        self.experiment = config.experiment or spec.experiment
        if self.uri.startswith(("http://", "https://")):
            for key, value in _SHORT_HTTP_WAITS.items():  # MLflow's defaults wait minutes for a server that is gone
                os.environ.setdefault(key, value)
        self.db_path = Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.held_params: set[str] = set()
        self.held_metrics: set[tuple[str, int, float]] = set()
        self.held_tags: dict[str, str] = {}
        with self._locked():
            self.client = MlflowClient(tracking_uri=self.uri)
            self.run_id = self._continued(earlier)
            if self.run_id is None:
                run = self.client.create_run(self._experiment_id(self.experiment), run_name=spec.run_id,
                                             tags=_tags(spec))
                self.run_id = run.info.run_id

    def record(self) -> dict:
        return {"run_id": self.run_id, "uri": self.uri, "experiment": self.experiment}

    def _continued(self, earlier: dict | None) -> str | None:
        """The MLflow run an earlier attempt started on this store and experiment, noting what it holds; None
        when there is none to continue (never started, deleted, or another store)."""
        if not earlier or not earlier.get("run_id") or \
                (earlier.get("uri"), earlier.get("experiment")) != (self.uri, self.experiment):
            return None
        from mlflow.exceptions import MlflowException
        try:
            run = self.client.get_run(earlier["run_id"])
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        if run.info.lifecycle_stage != "active":
            return None
        self.held_params, self.held_tags = set(run.data.params), dict(run.data.tags)
        for key, value in run.data.metrics.items():
            if key.startswith("epoch/"):
                self.held_metrics |= {(key, m.step, m.value) for m in self.client.get_metric_history(run.info.run_id,
                                                                                                      key)}
            else:
                self.held_metrics.add((key, 0, value))
        return run.info.run_id

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = self.config.artifact_location
        if location is None and self.db_path is not None:
            location = (self.db_path.parent / "mlartifacts").resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def start(self) -> None:
        with self._locked():
            self._log(params=flatten(self.spec.model_dump(mode="json")))

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        with self._locked():
            self._log(metrics={f"epoch/{k}": v for k, v in metrics.items()}, step=epoch)

    def finish(self, row: dict, run_dir: Path) -> None:
        with self._locked():
            self._log(metrics=numeric(row, exclude=NOT_METRICS))
            self.client.set_tag(self.run_id, "benchkit.status", str(row.get("status")))
            if row.get("error"):
                self.client.set_tag(self.run_id, "benchkit.error", str(row["error"])[:5000])
            elif "benchkit.error" in self.held_tags:  # an earlier attempt failed; this one did not
                self.client.delete_tag(self.run_id, "benchkit.error")
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
        """Send what the MLflow run does not hold yet, in batches MLflow accepts."""
        from mlflow.entities import Metric, Param
        now = int(time.time() * 1000)
        metric_items = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()
                        if (k, step, float(v)) not in self.held_metrics]
        param_items = [Param(k, v if len(v) <= _PARAM_LIMIT else v[:_PARAM_LIMIT - 3] + "...")
                       for k, v in (params or {}).items() if k not in self.held_params]
        for i in range(0, max(len(metric_items), len(param_items)), 100):
            self.client.log_batch(self.run_id, metrics=metric_items[i:i + 100], params=param_items[i:i + 100])

    def _locked(self):
        return file_lock(self.db_path.with_name(self.db_path.name + ".lock")) if self.db_path else nullcontext()


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
        return "sqlite:///" + str(inside(Path(uri[len("sqlite:///"):]), out_dir))
    if "://" not in uri and not uri.startswith("file:"):
        return str(inside(Path(uri), out_dir))
    return uri
