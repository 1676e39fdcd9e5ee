"""What a tracker backend does for one run, and the numbers a run sends to it.

:class:`~benchkit.results.tracking.RunTracker` drives the backends (:mod:`~benchkit.results.mlflow_tracking`,
:mod:`~benchkit.results.tensorboard_tracking`): ``start`` once, ``log_epoch`` per epoch, ``finish`` with the
run's row and folder. What :meth:`TrackerBackend.record` returns is kept in the run's tracking record, so a later
attempt continues where this one stopped.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

from benchkit.results import run_folder

RUN_FILES = (run_folder.CONFIG, run_folder.METRICS, run_folder.DETAILS, run_folder.INFO, run_folder.HISTORY,
             "predictions_valid.csv", "predictions_test.csv", run_folder.ERROR)
"""The run folder's files a tracker keeps as artifacts."""
NOT_METRICS = {"seed", "fold", "epoch"}


class TrackerBackend:
    """One tracker receiving one run."""

    name = "tracker"
    """As messages say it (``MLflow``)."""
    key = "tracker"
    """As the ``tracking`` section and the run's tracking record name it (``mlflow``)."""

    def start(self) -> None:
        """Send what is known before training (e.g. the config)."""

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, row: dict, run_dir: Path) -> None:
        raise NotImplementedError

    def record(self) -> dict:
        """What a later attempt needs to continue this one (e.g. the tracker's own run id)."""
        return {}


def numeric(row: dict, exclude: set[str]) -> dict[str, float]:
    """The finite numbers of a row (booleans and text left out)."""
    out = {}
    for key, value in row.items():
        if key in exclude or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def inside(path: Path, out_dir: Path) -> Path:
    """``path``, taken inside ``out_dir`` when relative."""
    path = Path(path)
    return (path if path.is_absolute() else Path(out_dir) / path).resolve()
