"""Where runs execute: here one after another, in N local processes, or as Ray tasks on a cluster.

An executor takes runs that the experiment has already claimed and prepared (:class:`RunTask`),
keeps at most ``capacity`` of them in flight, and reports each run's leaderboard row as it finishes.
Every executor calls the same :func:`benchkit.execution.runner.execute_run`, which writes into the run's
folder, so results land in the same output folder and leaderboard whatever executed them (for Ray
on several machines the output folder must be on a filesystem they all share). A task that dies
without writing its result (an exception outside the run, a killed worker, a lost node) becomes a
failed row written by the driver; a run that had finished keeps its result.

Every executor runs a run with the same number of torch threads, its ``resources.cpus``
(:func:`run_threads`): the thread count changes floating-point reductions, so this is what makes a
run's numbers independent of where it executed. Runs in workers draw no progress; the driver shows
them all in one display (:class:`benchkit.progress.RunsInFlight`).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from multiprocessing import connection
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from benchkit.config.schema import RunSpec
from benchkit.errors import ConfigError
from benchkit.progress import RunsInFlight, reporting_to
from benchkit.results import run_folder
from benchkit.execution.runner import execute_run
from benchkit.models.grader import BuiltModel

EXECUTORS = ("local", "ray")
REFRESH_SECONDS = 1.0
"""How often the driver reads the progress of runs in workers."""


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


def run_threads(spec: RunSpec) -> int:
    """The torch threads a run uses under every executor: its ``resources.cpus``, rounded, at least 1."""
    return max(1, int(round(spec.resources.cpus)))


def execute_task(task: RunTask) -> dict:
    """Run one task wherever this is called (this process, a pool worker or a Ray worker).

    Torch uses :func:`run_threads` threads for the run (restored afterwards), so the same run gives
    the same numbers in any executor. In a worker the run reports its progress to the driver.
    """
    with _torch_threads(run_threads(task.spec)), reporting_to(task.out_dir if task.in_worker else None):
        return execute_run(task.spec, task.out_dir, quiet=task.quiet, resume=task.resume, built=task.built)


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

    def run(self, tasks: Iterable[RunTask], on_done: Callable[[RunTask, dict], None],
            display: RunsInFlight | None = None, close: bool = True) -> None:
        """Pull tasks lazily (claiming happens as they are pulled) and execute them; ``display`` shows
        the runs in flight when they execute in workers. ``close=False`` keeps the workers for another call."""
        pending = iter(tasks)
        in_flight: dict[Any, RunTask] = {}
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
                        row = outcome if isinstance(outcome, dict) else record_lost_run(task, outcome, self.name)
                        if display is not None:
                            display.finished(task.spec.run_id, row)
                        on_done(task, row)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()


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


class RayExecutor(Executor):
    """Each run is a Ray task asking for the run's ``resources: {cpus, gpus}``.

    Connects to ``address`` (a running cluster, e.g. ``ray://head:10001`` or ``auto``), or starts a
    local Ray with ``num_cpus`` (default: all cores) and stops it again when done. A Ray already
    initialised in this process (``ray.init`` called by the user) is used as it is.
    """

    name = "ray"
    in_workers = True

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'benchkit[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                try:
                    ray.init(address=address)
                except (ValueError, ConnectionError) as exc:  # a malformed or unreachable address
                    raise ConfigError(f"--ray-address {address}: cannot connect ({' '.join(str(exc).split())})"
                                      ) from None
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
            self._started = True
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(max_retries=0)(execute_task)

    def submit(self, task: RunTask) -> Any:
        resources = task.spec.resources
        if self._started and resources.cpus > self.capacity:  # Ray would wait for it forever
            raise ConfigError(f"run {task.spec.run_id} asks for resources.cpus={resources.cpus:g} but the local "
                              f"Ray has {self.capacity} CPU(s): raise --jobs or lower resources.cpus")
        return self._remote.options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                     name=f"benchkit:{task.spec.run_id}").remote(worker_task(task))

    def wait_any(self, handles: list, timeout: float | None = None) -> list[tuple[Any, dict | BaseException]]:
        ready, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        results = []
        for ref in ready:
            try:
                results.append((ref, self._ray.get(ref)))
            except self._ray.exceptions.RayError as exc:
                results.append((ref, exc))
        return results

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def make_executor(name: str = "local", jobs: int = 1, ray_address: str | None = None) -> Executor:
    """The executor the command line asks for (``--executor``, ``--jobs``, ``--ray-address``)."""
    if name == "local":
        return LocalExecutor(jobs)
    if name == "ray":
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
