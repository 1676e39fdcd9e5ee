"""Where runs execute: here one after another, in N local processes, or as Ray tasks on a cluster.

:func:`make_executor` gives the executor the command line asks for: :class:`LocalExecutor` (this module) or
:class:`~benchkit.execution.ray_executor.RayExecutor`. Both follow :class:`benchkit.execution.tasks.Executor`
(at most ``capacity`` runs in flight, each through the same runner, so a run's numbers do not depend on the
executor). Runs in workers draw no progress; the driver shows them all in one display
(:class:`benchkit.progress.RunsInFlight`).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from contextlib import contextmanager
from multiprocessing import connection
from typing import Any

from benchkit.errors import ConfigError
from benchkit.execution.tasks import Executor, RunTask, execute_task, record_lost_run, run_threads, worker_task

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RunTask", "execute_task", "make_executor", "place_workers",
           "record_lost_run", "run_threads", "visible_gpus", "worker_task"]
EXECUTORS = ("local", "ray")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries ([] without CUDA)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


def place_workers(jobs: int, gpus: list[str]) -> list[dict[str, str]]:
    """Environment of each of ``jobs`` workers: round robin over ``gpus``, so several share a GPU.

    >>> place_workers(3, ["0", "1"])  # doctest: +NORMALIZE_WHITESPACE
    [{'CUDA_VISIBLE_DEVICES': '0', 'BENCHKIT_RUNS_PER_DEVICE': '2'},
     {'CUDA_VISIBLE_DEVICES': '1', 'BENCHKIT_RUNS_PER_DEVICE': '1'},
     {'CUDA_VISIBLE_DEVICES': '0', 'BENCHKIT_RUNS_PER_DEVICE': '2'}]
    """
    if not gpus:
        return [{} for _ in range(jobs)]
    chosen = [gpus[slot % len(gpus)] for slot in range(jobs)]
    return [{"CUDA_VISIBLE_DEVICES": gpu, "BENCHKIT_RUNS_PER_DEVICE": str(chosen.count(gpu))} for gpu in chosen]


class LocalExecutor(Executor):
    """``jobs=1``: in this process, one run after another; ``jobs>1``: ``jobs`` spawned worker
    processes, one run at a time each, placed round robin over the visible GPUs (each worker sees
    one GPU through ``CUDA_VISIBLE_DEVICES``; with more workers than GPUs, runs share a GPU). A
    worker that dies takes only its current run with it and is replaced on the same GPU."""

    name = "local"

    def __init__(self, jobs: int = 1, gpus: list[str] | None = None):
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1 (got {jobs})")
        self.capacity = jobs
        self.in_workers = jobs > 1
        self._places = place_workers(jobs, visible_gpus() if gpus is None else gpus) if jobs > 1 else []
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()

    def submit(self, task: RunTask) -> Any:
        if self.capacity == 1:
            return _Done(task, _run_here(task))
        worker = self._idle.pop() if self._idle else self._spawn(self._free_slot())
        worker.conn.send(worker_task(task))
        self._busy.add(worker)
        return worker

    def _free_slot(self) -> int:
        taken = {w.slot for w in self._idle} | {w.slot for w in self._busy}
        return min(set(range(self.capacity)) - taken)

    def _spawn(self, slot: int) -> "_Worker":
        return _Worker(slot, self._places[slot])

    def wait_any(self, handles: list, timeout: float | None = None) -> list[tuple[Any, dict | BaseException | str]]:
        if all(isinstance(h, _Done) for h in handles):
            return [(h, h.outcome) for h in handles]
        ready = set(connection.wait([h.conn for h in handles], timeout))
        results = []
        for worker in [h for h in handles if h.conn in ready]:
            self._busy.discard(worker)
            try:
                outcome = worker.conn.recv()
                self._idle.append(worker)
            except EOFError:
                worker.stop()
                outcome = f"worker process exited with status {worker.process.exitcode} before reporting"
            results.append((worker, outcome))
        return results

    def close(self) -> None:
        for worker in self._idle:
            worker.stop()
        for worker in self._busy:
            worker.process.terminate()
            worker.stop()
        self._idle, self._busy = [], set()


def make_executor(name: str = "local", jobs: int = 1, ray_address: str | None = None) -> Executor:
    """The executor the command line asks for (``--executor``, ``--jobs``, ``--ray-address``)."""
    if name == "local":
        return LocalExecutor(jobs)
    if name == "ray":
        from benchkit.execution.ray_executor import RayExecutor
        return RayExecutor(ray_address, num_cpus=jobs if jobs > 1 else None)
    raise ConfigError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")


class _Worker:
    """A spawned process that executes the tasks sent through ``conn`` and sends back each row.

    ``env`` (its GPU placement) is the child's environment from its first instruction, before any
    import could initialise CUDA.
    """

    def __init__(self, slot: int = 0, env: dict[str, str] | None = None):
        self.slot = slot
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_end,), name=f"benchkit-worker-{slot}")
        with _environment(env or {}):
            self.process.start()
        child_end.close()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                self.process.terminate()
        self.process.join()
        self.conn.close()


@contextmanager
def _environment(env: dict[str, str]):
    """``os.environ`` with ``env`` set, for a child process started inside; restored afterwards."""
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker_main(conn) -> None:
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            outcome: Any = execute_task(task)
        except KeyboardInterrupt:
            outcome = KeyboardInterrupt()
        except BaseException:
            outcome = traceback.format_exc()
        conn.send(outcome)


class _Done:
    """A task already executed in this process."""

    def __init__(self, task: RunTask, outcome: dict | BaseException):
        self.task, self.outcome = task, outcome


def _run_here(task: RunTask) -> dict | BaseException:
    try:
        return execute_task(task)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return exc


def __getattr__(name: str):
    """``RayExecutor`` moved to :mod:`benchkit.execution.ray_executor`; the old path warns."""
    if name == "RayExecutor":
        import warnings
        warnings.warn("benchkit.execution.executors.RayExecutor is deprecated; import it from "
                      "benchkit.execution.ray_executor", DeprecationWarning, stacklevel=2)
        from benchkit.execution.ray_executor import RayExecutor
        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
