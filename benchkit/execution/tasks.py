"""A claimed run as a task for an executor, and what every executor does: the contract and its run loop.

An executor (:mod:`~benchkit.execution.executors`, :mod:`~benchkit.execution.ray_executor`) takes runs that
the experiment has already claimed and prepared (:class:`RunTask`), keeps at most ``capacity`` of them in
flight, and reports each run's leaderboard row as it finishes. Every executor calls the same
:func:`execute_task` (:func:`benchkit.execution.runner.execute_run`), which writes into the run's folder, so
results land in the same output folder and leaderboard whatever executed them. A task whose machine was
lost (a Ray node gone) is sent again, resuming from its last checkpoint, while the driver keeps its claim;
a task that dies otherwise without writing its result becomes a failed row written by the driver; a run
that had finished keeps its result.

Every executor runs a run with the same number of torch threads, its ``resources.cpus``
(:func:`run_threads`): the thread count changes floating-point reductions, so this is what makes a run's
numbers independent of where it executed.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from benchkit.config.schema import RunSpec
from benchkit.execution.runner import execute_run
from benchkit.models.grader import BuiltModel
from benchkit.progress import RunsInFlight, log_console, reporting_to
from benchkit.results import run_folder

REFRESH_SECONDS = 1.0
"""How often the driver reads the progress of runs in workers."""
LOST_MACHINE_RETRIES = 3
"""How many times a run whose machine was lost is sent again (then it is a failed row)."""


@dataclass
class RunTask:
    """One claimed run to execute: its spec, the (absolute) output folder and whether to resume."""

    spec: RunSpec
    out_dir: Path
    resume: bool = False
    quiet: bool = False
    in_worker: bool = False
    built: BuiltModel | None = None
    """The run's model, built by the input check in this process (never sent to a worker)."""
    where: dict[str, str] | None = None
    """Where the run executes beyond its host (e.g. ``{"ray_node": ID}``), added to its row."""


def run_threads(spec: RunSpec) -> int:
    """The torch threads a run uses under every executor: its ``resources.cpus``, rounded, at least 1."""
    return max(1, int(round(spec.resources.cpus)))


def execute_task(task: RunTask) -> dict:
    """Run one task wherever this is called (this process, a pool worker or a Ray worker).

    Torch uses :func:`run_threads` threads for the run (restored afterwards), so the same run gives
    the same numbers in any executor. In a worker the run reports its progress to the driver.
    """
    with _torch_threads(run_threads(task.spec)), reporting_to(task.out_dir if task.in_worker else None):
        return execute_run(task.spec, task.out_dir, quiet=task.quiet, resume=task.resume, built=task.built,
                           where=task.where)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def worker_task(task: RunTask) -> RunTask:
    """The task as sent to a worker: it reports its progress to the driver instead of drawing it."""
    return replace(task, in_worker=True, built=None)


def record_lost_run(task: RunTask, error: BaseException | str, executor: str) -> dict:
    """The row of a task that ended without a result: kept if the run had finished, else failed."""
    run_dir = run_folder.folder_of(task.out_dir, task.spec)
    row = run_folder.read_row(run_dir)
    if row is not None and row.get("status") == "ok":
        return row
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    row = run_folder.base_row(task.spec)
    row.update(status="failed", error=f"{executor} task lost: {text.strip().splitlines()[0] if text.strip() else text}")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_folder.record_failure(run_dir, text if isinstance(error, str) else "".join(traceback.format_exception(error)))
    run_folder.write_row(run_dir, row)
    return row


class Executor:
    """Runs tasks with at most ``capacity`` in flight; ``on_done(task, row)`` as each one ends."""

    name = "local"
    capacity = 1
    in_workers = False
    """Whether runs execute outside this process (then the driver shows their progress)."""

    def submit(self, task: RunTask) -> Any:
        raise NotImplementedError

    def wait_any(self, handles: list, timeout: float | None = None) -> list[tuple[Any, dict | BaseException | str]]:
        """Finished handles with their row, or with the error (exception or text) that lost them: at
        least one, or none when ``timeout`` seconds passed first."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers or the cluster connection this executor started."""

    def machine_lost(self, outcome: dict | BaseException | str) -> bool:
        """Whether ``outcome`` says the task's machine was lost (then the run is sent again)."""
        return False

    def run(self, tasks: Iterable[RunTask], on_done: Callable[[RunTask, dict], None],
            display: RunsInFlight | None = None, again: Callable[[RunTask], RunTask] | None = None,
            close: bool = True) -> None:
        """Pull tasks lazily (claiming happens as they are pulled) and execute them; ``display`` shows
        the runs in flight when they execute in workers; ``again(task)``: the task of a run whose machine
        was lost, to send again (default: as it was); ``close=False`` keeps the workers for another call."""
        pending = iter(tasks)
        in_flight: dict[Any, RunTask] = {}
        sent_again: dict[str, int] = {}
        exhausted = False
        display = display if self.in_workers else None
        try:
            with display or nullcontext():
                while True:
                    while not exhausted and len(in_flight) < self.capacity:
                        task = next(pending, None)
                        if task is None:
                            exhausted = True
                        else:
                            if display is not None:  # first: it clears a stale progress file of the run
                                display.started(task.spec.run_id)
                            in_flight[self.submit(task)] = task
                    if not in_flight:
                        break
                    finished = self.wait_any(list(in_flight), REFRESH_SECONDS if display is not None else None)
                    if display is not None:
                        display.refresh()
                    for handle, outcome in finished:
                        task = in_flight.pop(handle)
                        if isinstance(outcome, KeyboardInterrupt):
                            raise outcome
                        if self.machine_lost(outcome) and sent_again.get(task.spec.run_id, 0) < LOST_MACHINE_RETRIES:
                            sent_again[task.spec.run_id] = sent_again.get(task.spec.run_id, 0) + 1
                            task = _again(task, outcome, again)
                            in_flight[self.submit(task)] = task
                            continue
                        row = outcome if isinstance(outcome, dict) else record_lost_run(task, outcome, self.name)
                        if display is not None:
                            display.finished(task.spec.run_id, row)
                        on_done(task, row)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()


def _again(task: RunTask, outcome: BaseException | str, again: Callable[[RunTask], RunTask] | None) -> RunTask:
    """The task of a run whose machine was lost, as ``again`` prepares it (resuming from the checkpoint that
    attempt left, if any)."""
    task = again(task) if again is not None else task
    reason = str(outcome).strip().split(". ")[0].splitlines()[0] if str(outcome).strip() else type(outcome).__name__
    log_console.print(f"[yellow]{task.spec.run_id}: its machine was lost ({reason}); running it again "
                      + ("from its last checkpoint[/]" if task.resume else "from the start[/]"))
    return task
