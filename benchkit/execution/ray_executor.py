"""Runs as Ray tasks: on a local Ray started for the command, or on a cluster named by ``--ray-address``.

Each run is one task asking for its ``resources: {cpus, gpus}`` and records the Ray node it ran on
(``ray_node`` in its row). A node lost mid-grid (:class:`ray.exceptions.NodeDiedError`) costs no run: the
driver still holds the run's claim and sends it again, resuming from the last checkpoint that node wrote
to the shared output folder (:meth:`benchkit.execution.executors.Executor.run`).

A Ray that benchkit starts on this machine, or joins at a loopback address, is bound to 127.0.0.1
(:func:`on_loopback`): Ray otherwise turns a loopback address into the machine's network address and
listens there. An address where nothing answers is refused within :data:`CONNECT_SECONDS`, before Ray
would retry for minutes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

from benchkit.errors import ConfigError
from benchkit.execution.tasks import Executor, RunTask, execute_task, worker_task

LOOPBACK = "127.0.0.1"
CONNECT_SECONDS = 5.0
"""How long a ``--ray-address`` may take to accept a connection."""
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch that, set to 0, keeps a node on the loopback address (read when ``ray`` is imported)."""


class RayExecutor(Executor):
    """Each run is a Ray task asking for the run's ``resources: {cpus, gpus}``.

    Connects to ``address`` (a running cluster: ``HOST:PORT`` of its head, ``ray://HOST:10001`` or ``auto``),
    or starts a local Ray with ``num_cpus`` (default: all cores) on 127.0.0.1 and stops it again when done.
    A Ray already initialised in this process (``ray.init`` called by the user) is used as it is.
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
                check_reachable(address)
                with on_loopback(enabled=is_loopback(address)):
                    try:
                        ray.init(address=address)
                    except (ValueError, ConnectionError) as exc:  # malformed, or no cluster behind `auto`
                        raise ConfigError(f"--ray-address {address}: cannot connect ({' '.join(str(exc).split())})"
                                          ) from None
            else:
                with on_loopback():
                    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
            self._started = True
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(max_retries=0)(_on_ray_node)

    def submit(self, task: RunTask) -> Any:
        resources = task.spec.resources
        if self._started and resources.cpus > self.capacity:  # Ray would wait for it forever
            raise ConfigError(f"run {task.spec.run_id} asks for resources.cpus={resources.cpus:g} but the "
                              f"Ray cluster has {self.capacity} CPU(s): raise --jobs or lower resources.cpus")
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

    def machine_lost(self, outcome: dict | BaseException | str) -> bool:
        return isinstance(outcome, self._ray.exceptions.NodeDiedError)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def _on_ray_node(task: RunTask) -> dict:
    """The Ray task: the run, with the node it runs on in its row."""
    import ray
    return execute_task(replace(task, where={**(task.where or {}),
                                             "ray_node": ray.get_runtime_context().get_node_id()}))


def is_loopback(address: str) -> bool:
    """Whether a ``--ray-address`` names this machine's loopback interface (``127.0.0.1:6379``, ``localhost:...``)."""
    host = _host_port(address)[0] if address != "auto" else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reachable(address: str) -> None:
    """ConfigError unless something accepts a connection at ``address`` within :data:`CONNECT_SECONDS`.

    ``auto`` is left to Ray, which finds the cluster this machine runs (and says so at once when none runs).
    """
    if address == "auto":
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({reason}); start one "
                          f"(`ray start --head`) or give its head's HOST:PORT, ray://HOST:10001 or auto") from None


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


@contextmanager
def on_loopback(enabled: bool = True) -> Iterator[None]:
    """A Ray started (or joined) inside keeps its nodes on 127.0.0.1; the process is left as it was after.

    Ray reads its switch from the environment of the processes it starts and, in this process, once at
    import: both are set for the duration (a connection to a real cluster later needs them unset).
    """
    if not enabled:
        yield
        return
    from ray._private import ray_constants
    before = os.environ.get(_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before[0] is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = before[0]
        ray_constants.ENABLE_RAY_CLUSTER = before[1]
