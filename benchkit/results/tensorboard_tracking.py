"""A run sent to TensorBoard (``tracking.tensorboard: DIR``): its scalars under ``DIR/<run_id>``.

Every epoch's history row as scalars ``epoch/<name>`` (step = epoch), the final row as ``final/<name>``, the
config as text, and the run's hyperparameters with its final metrics in the HParams dashboard. Each attempt
writes the run's folder anew (an attempt that continues an earlier one sends the earlier epochs from
``history.csv``), so no scalar is there twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchkit.config.schema import RunSpec, dump_yaml
from benchkit.errors import ConfigError
from benchkit.results.tracking_backend import NOT_METRICS, TrackerBackend, numeric


class TensorBoardBackend(TrackerBackend):
    name, key = "TensorBoard", "tensorboard"

    def __init__(self, spec: RunSpec, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tracking.tensorboard needs TensorBoard: pip install 'benchkit[tensorboard]'") from None
        self.spec = spec
        folder = Path(log_dir) / spec.run_id
        shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's events: this one sends them all again
        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("config", "```\n" + dump_yaml(spec.model_dump(mode="json")) + "\n```", 0)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()

    def finish(self, row: dict, run_dir: Path) -> None:
        for key, value in numeric(row, exclude=NOT_METRICS).items():
            self.writer.add_scalar(f"final/{key}", value, 0)
        self.writer.add_text("status", f"{row.get('status')} {row.get('error') or ''}".strip(), 0)
        if row.get("status") == "ok":
            final = {f"hparam/{k}": v for k, v in numeric(row, exclude=NOT_METRICS).items()
                     if k.startswith(("valid_", "test_")) and not k.endswith(("_lo", "_hi"))}
            self.writer.add_hparams(hparams(self.spec), final, run_name=".")
        self.writer.close()


def hparams(spec: RunSpec) -> dict[str, Any]:
    """What identifies a run in TensorBoard's HParams table: model, head, seed, grid values and the recipe."""
    values = {"model": spec.model_name, "backbone": spec.model.backbone.name, "head": spec.model.head.name,
              "seed": spec.seed, "split": spec.split, "fold": spec.fold, **spec.grid,
              "lr": spec.train.optimizer.lr, "batch_size": spec.train.batch_size, "epochs": spec.train.epochs}
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in values.items()}
