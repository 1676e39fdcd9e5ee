"""Ray beyond one process: every Ray stays on 127.0.0.1; a three-node cluster (``ray.cluster_utils.Cluster``)
spreads a grid over its nodes, and a worker node removed while a run is on it costs no run and no duplicate
row (the run is sent again and the leaderboard equals the undisturbed one); an address where nothing
listens is refused within seconds."""

import importlib.util
import re
import threading
import time

import pandas as pd
import pytest

from benchkit.cli import main
from conftest import REPO, TINY_PLUGIN, small_experiment

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray is not installed (pip install 'benchkit[ray]')")
SIGNAL_PLUGIN = REPO / "tests" / "plugins" / "node_signal.py"
LOOPBACK = "127.0.0.1"


def _board(out) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv").set_index("run_id").sort_index()


def test_a_local_ray_that_benchkit_starts_listens_on_127_0_0_1_only(monkeypatch):
    import ray
    from ray._private import ray_constants

    from benchkit.execution.ray_executor import RayExecutor
    # as on a user's machine: Ray would put its node on the machine's network address
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    executor = RayExecutor(num_cpus=1)
    try:
        assert [node["NodeManagerAddress"] for node in ray.nodes()] == [LOOPBACK]
        assert ray.util.get_node_ip_address() == LOOPBACK
        assert ray.get_runtime_context().gcs_address.startswith(LOOPBACK + ":")
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert ray_constants.ENABLE_RAY_CLUSTER is True  # the process is left as it was
    import os
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ


@pytest.mark.parametrize("address", ["127.0.0.1:1", "localhost:1"])
def test_a_ray_address_where_nothing_listens_is_refused_within_seconds(tmp_path, capsys, address):
    experiment = small_experiment(tmp_path)
    codes = []
    attempt = threading.Thread(target=lambda: codes.append(main(
        ["run", str(experiment), "--out", str(tmp_path / "out"), "--executor", "ray", "--ray-address", address])),
        daemon=True)  # Ray's own connection attempts go on for minutes
    attempt.start()
    attempt.join(timeout=10)
    assert codes == [2]
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert f"--ray-address {address}" in message and "no Ray cluster answers there" in message
    assert not (tmp_path / "out" / "runs").exists()


def test_a_malformed_ray_address_names_the_expected_form(tmp_path, capsys):
    assert main(["run", str(small_experiment(tmp_path)), "--executor", "ray", "--ray-address", "head"]) == 2
    assert "--ray-address head: expected HOST:PORT" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker nodes on this machine, one CPU and a resource of its own each, all on 127.0.0.1."""
    import ray
    from ray.cluster_utils import Cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1},
                                                           "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, resources={f"worker{i}": 1}) for i in (1, 2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def _grid(tmp_path, signals):
    return small_experiment(tmp_path, plugins=[str(TINY_PLUGIN), str(SIGNAL_PLUGIN)],
                            models=[{"backbone": {"name": "signalling_cnn",
                                                  "options": {"signals": str(signals), "pause": 0.15}},
                                     "head": "regression"}],
                            grid={"backbone.dropout": [0.0, 0.3]}, seeds=[0, 1], resources={"cpus": 1})


def _remove_when_a_run_trains_on(cluster, node, signals, done: threading.Event) -> threading.Thread:
    def watch():
        while not done.is_set():
            if (signals / node.node_id).exists():
                cluster.remove_node(node)
                return
            time.sleep(0.02)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_worker_node_lost_mid_grid_costs_no_run_and_no_duplicate(cluster, tmp_path, capsys):
    import ray
    cluster, (lost, kept) = cluster
    nodes = {node.node_id: node.node_ip_address for node in [cluster.head_node, lost, kept]}
    assert set(nodes.values()) == {LOOPBACK}
    ray.init(address=cluster.address)
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {LOOPBACK} and len(ray.nodes()) == 3
    finally:
        ray.shutdown()

    signals = tmp_path / "signals"
    signals.mkdir()
    experiment = _grid(tmp_path, signals)
    undisturbed = tmp_path / "here"
    assert main(["run", str(experiment), "--out", str(undisturbed), "--quiet"]) == 0

    out, done = tmp_path / "cluster", threading.Event()
    watcher = _remove_when_a_run_trains_on(cluster, lost, signals, done)
    capsys.readouterr()
    try:
        code = main(["run", str(experiment), "--out", str(out), "--quiet", "--executor", "ray",
                     "--ray-address", cluster.address])
    finally:
        done.set()
        watcher.join()
    assert code == 0
    assert not any(n["Alive"] for n in _nodes_seen(cluster) if n["NodeID"] == lost.node_id)
    sent_again = re.findall(r"(\S+): its machine was lost", capsys.readouterr().err)
    assert len(sent_again) == 1  # the run on the removed node, which ran again elsewhere

    board, reference = _board(out), _board(undisturbed)
    assert len(board) == 4 and board.index.is_unique and list(board.index) == list(reference.index)
    assert (board.status == "ok").all()
    assert set(board.ray_node) <= set(nodes) and len(set(board.ray_node)) >= 2  # spread over the nodes
    assert board.loc[sent_again[0], "ray_node"] != lost.node_id
    metrics = [c for c in reference if c.startswith(("valid_", "test_"))]
    pd.testing.assert_frame_equal(board[["seed", "dropout", "epochs", "best_epoch"]],
                                  reference[["seed", "dropout", "epochs", "best_epoch"]])
    pd.testing.assert_frame_equal(board[metrics], reference[metrics], check_exact=False, rtol=1e-9, atol=1e-12)
    assert "ray_node" not in reference and (reference.host == board.host).all()


def _nodes_seen(cluster) -> list[dict]:
    import ray
    ray.init(address=cluster.address)
    try:
        return ray.nodes()
    finally:
        ray.shutdown()
