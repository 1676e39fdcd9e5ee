"""Progress display: a rich bar per run (epoch, loss, validation metric, ETA) or plain log lines."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(width=None if sys.stdout.isatty() else 200)
"""Results (tables) go to standard output."""
log_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
"""Progress and log lines go to standard error."""


class RunProgress:
    """Shows one training run. ``quiet=True`` prints one line per epoch instead of a live bar."""

    def __init__(self, run_id: str, epochs: int, monitor: str, quiet: bool = False):
        self.run_id, self.epochs, self.monitor, self.quiet = run_id, epochs, monitor, quiet
        self._progress = None
        self._task = None

    def __enter__(self) -> "RunProgress":
        if not self.quiet and log_console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[metric]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=log_console)
            self._progress.start()
            self._task = self._progress.add_task(self.run_id, total=self.epochs, loss="-", metric="")
        else:
            log_console.print(f"[bold]{self.run_id}[/]: training up to {self.epochs} epoch(s)")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def resumed(self, epoch: int) -> None:
        """Say that training continues from a checkpoint taken after ``epoch``."""
        log_console.print(f"[bold]{self.run_id}[/]: resuming from epoch {epoch} of {self.epochs} "
                          f"(checkpoint last.pt)")
        if self._progress is not None:
            self._progress.update(self._task, completed=epoch)

    def step(self, step: int, loss: float | None) -> None:
        if self._progress is not None and loss is not None:
            self._progress.update(self._task, loss=f"{loss:.4f}")

    def epoch(self, row: dict) -> None:
        metric = row.get(f"valid_{self.monitor}")
        text = f"valid_{self.monitor} {metric:.4f}" if metric is not None else ""
        if self._progress is not None:
            self._progress.update(self._task, completed=row["epoch"], loss=f"{row['train_loss']:.4f}",
                                  metric=text)
        else:
            extra = "" if self.monitor == "loss" else f" {text}"
            print(f"{self.run_id} epoch {row['epoch']}/{self.epochs} train_loss {row['train_loss']:.4f} "
                  f"valid_loss {row['valid_loss']:.4f}{extra} ({row['seconds']:.1f}s)",
                  file=sys.stderr, flush=True)

    def set_total(self, epochs_run: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=epochs_run, completed=epochs_run)
