"""Progress display: a rich bar per run (epoch, loss, best validation metric, ETA) or plain log lines.

A run executing in this process draws its own bar (:class:`RunProgress`). A run executing in a
worker (``--jobs N`` processes, Ray tasks) draws nothing: it writes its state to a small JSON file
in the output folder (:func:`reporting_to`), and the driver shows every run in flight in one
display with the count of finished runs (:class:`RunsInFlight`), so no two processes draw on one
terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(width=None if sys.stdout.isatty() else 200)
"""Results (tables) go to standard output."""
log_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
"""Progress and log lines go to standard error."""

PROGRESS_FOLDER = ".progress"
_report_into: Path | None = None


def can_draw() -> bool:
    """Whether this process may draw live bars: standard error is a terminal and it is not a worker."""
    return _report_into is None and log_console.is_terminal


@contextmanager
def reporting_to(out_dir: Path | None) -> Iterator[None]:
    """In a worker: runs report their progress into ``out_dir`` for the driver instead of drawing it."""
    global _report_into
    before, _report_into = _report_into, (Path(out_dir) if out_dir is not None else None)
    try:
        yield
    finally:
        _report_into = before


def progress_file(out_dir: Path, run_id: str) -> Path:
    """Where a worker's run writes its progress and the driver reads it."""
    return Path(out_dir) / PROGRESS_FOLDER / f"{run_id}.json"


class TaskProgress:
    """One long task counted in items (decoding, predicting): a rich bar on the log console when this
    process may draw, else a start line (with ``note``) and an end line; ``enabled=False`` says nothing."""

    def __init__(self, description: str, total: int, enabled: bool = True, note: str = ""):
        self.description, self.total, self.enabled, self.note = description, total, enabled, note
        self._bar: Progress | None = None
        self._task = None
        self._start = 0.0

    def __enter__(self) -> "TaskProgress":
        self._start = time.perf_counter()
        if not self.enabled:
            return self
        if can_draw():
            self._bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=log_console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        else:
            log_console.print(self.description + (f" ({self.note})" if self.note else ""))
        return self

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self.enabled and exc[0] is None:
            log_console.print(f"{self.description}: done in {time.perf_counter() - self._start:.1f}s")


class RunProgress:
    """Shows one training run. ``quiet=True`` prints one line per epoch instead of a live bar; in a
    worker (see :func:`reporting_to`) it only writes its state for the driver."""

    def __init__(self, run_id: str, epochs: int, monitor: str, quiet: bool = False, maximize: bool = False):
        self.run_id, self.epochs, self.monitor, self.quiet = run_id, epochs, monitor, quiet
        self.maximize = maximize
        self.report_file = progress_file(_report_into, run_id) if _report_into is not None else None
        self.state: dict = {"run_id": run_id, "epoch": 0, "epochs": epochs, "monitor": f"valid_{monitor}",
                            "best": None, "best_epoch": None, "seconds": 0.0, "resumed_from": None}
        self._progress = None
        self._task = None

    def __enter__(self) -> "RunProgress":
        if self.report_file is not None:
            self._report()
        elif not self.quiet and can_draw():
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
        self.state.update(epoch=epoch, resumed_from=epoch)
        if self.report_file is not None:
            self._report()
            return
        log_console.print(f"[bold]{self.run_id}[/]: resuming from epoch {epoch} of {self.epochs} "
                          f"(checkpoint last.pt)")
        if self._progress is not None:
            self._progress.update(self._task, completed=epoch)

    def step(self, step: int, loss) -> None:
        """``loss``: the epoch's running mean, a number or a device tensor read only when a bar shows it."""
        if self._progress is not None and loss is not None:
            self._progress.update(self._task, loss=f"{float(loss):.4f}")

    def epoch(self, row: dict) -> None:
        metric = row.get(self.state["monitor"])
        best = self.state["best"]
        if metric is not None and (best is None or (metric > best if self.maximize else metric < best)):
            self.state.update(best=metric, best_epoch=row["epoch"])
        self.state.update(epoch=row["epoch"], seconds=row.get("seconds", 0.0), train_loss=row.get("train_loss"))
        text = f"{self.state['monitor']} {metric:.4f}" if metric is not None else ""
        if self.report_file is not None:
            self._report()
        elif self._progress is not None:
            self._progress.update(self._task, completed=row["epoch"], loss=f"{row['train_loss']:.4f}",
                                  metric=text)
        else:
            extra = "" if self.monitor == "loss" else f" {text}"
            print(f"{self.run_id} epoch {row['epoch']}/{self.epochs} train_loss {row['train_loss']:.4f} "
                  f"valid_loss {row['valid_loss']:.4f}{extra} ({row['seconds']:.1f}s)",
                  file=sys.stderr, flush=True)

    def set_total(self, epochs_run: int) -> None:
        self.state.update(epochs=epochs_run, epoch=epochs_run)
        if self.report_file is not None:
            self._report()
        elif self._progress is not None:
            self._progress.update(self._task, total=epochs_run, completed=epochs_run)

    def _report(self) -> None:
        """Replace the progress file (written beside, then renamed: the driver never reads half of one)."""
        self.report_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.report_file.with_name(f".{self.report_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps({**self.state, "updated": time.time()}), encoding="utf-8")
        os.replace(tmp, self.report_file)


def eta_seconds(state: dict) -> float | None:
    """Time left for the epochs still allowed, at the run's mean epoch time so far (early stopping may end it sooner)."""
    if state["epoch"] <= 0 or not state.get("seconds"):
        return None
    return max(0, state["epochs"] - state["epoch"]) * state["seconds"] / state["epoch"]


def describe(state: dict) -> str:
    """``epoch 3/8  best valid_mae 0.4210 (epoch 2)  ETA 0:01:05`` from a run's progress state."""
    parts = [f"epoch {state['epoch']}/{state['epochs']}"]
    if state.get("best") is not None:
        parts.append(f"best {state['monitor']} {state['best']:.4f} (epoch {state['best_epoch']})")
    eta = eta_seconds(state)
    if eta is not None:
        parts.append(f"ETA {_clock(eta)}")
    return "  ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RunsInFlight:
    """The driver's one display of runs executing in workers: a line per run in flight (epoch, best
    metric, ETA, read from the files the workers write) and the count of finished runs.

    Without a terminal (or ``quiet``) it prints a plain line whenever a run finishes an epoch.
    """

    def __init__(self, out_dir: Path, total: int, quiet: bool = False):
        self.out_dir, self.total, self.quiet = Path(out_dir), total, quiet
        self.finished_count = 0
        self._seen: dict[str, tuple] = {}
        self._tasks: dict[str, int] = {}
        self._progress: Progress | None = None
        self._overall = None

    def __enter__(self) -> "RunsInFlight":
        if not self.quiet and can_draw():
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                      console=log_console)
            self._progress.start()
            self._overall = self._progress.add_task("[bold]finished runs", total=self.total,
                                                    info=f"0/{self.total}")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
        folder = self.out_dir / PROGRESS_FOLDER
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def started(self, run_id: str) -> None:
        self._seen[run_id] = ()
        progress_file(self.out_dir, run_id).unlink(missing_ok=True)  # a stale file from a killed earlier attempt
        if self._progress is not None:
            self._tasks[run_id] = self._progress.add_task(run_id, total=None, info="starting")

    def refresh(self) -> None:
        """Read the progress of every run in flight and show what changed."""
        for run_id in list(self._seen):
            state = self._read(run_id)
            if state is None:
                continue
            key = (state["epoch"], state["epochs"], state.get("resumed_from"))
            if key == self._seen[run_id]:
                continue
            self._seen[run_id] = key
            if self._progress is not None:
                self._progress.update(self._tasks[run_id], total=state["epochs"], completed=state["epoch"],
                                      info=describe(state))
            elif state.get("resumed_from") is not None and state["epoch"] == state["resumed_from"]:
                log_console.print(f"{run_id}: resuming from epoch {state['epoch']} (checkpoint last.pt)")
            elif state["epoch"]:
                log_console.print(f"{run_id} {describe(state)}", highlight=False)

    def finished(self, run_id: str, row: dict) -> None:
        self.refresh()
        self._seen.pop(run_id, None)
        progress_file(self.out_dir, run_id).unlink(missing_ok=True)
        self.finished_count += 1
        if self._progress is not None:
            self._progress.remove_task(self._tasks.pop(run_id))
            self._progress.update(self._overall, completed=self.finished_count,
                                  info=f"{self.finished_count}/{self.total}")
        else:
            log_console.print(f"finished {self.finished_count}/{self.total} run(s): {run_id} "
                              f"({row.get('status', '?')})", highlight=False)

    def _read(self, run_id: str) -> dict | None:
        try:
            return json.loads(progress_file(self.out_dir, run_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
