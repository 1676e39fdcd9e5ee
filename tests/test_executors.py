"""Executors: the same 4-run grid run here, in 2 local processes and as Ray tasks gives the same rows;
runs that raise, run out of memory or whose worker dies become failed rows; finished runs are kept
across executors; local workers are placed round robin over the GPUs, Ray packs fractional GPUs."""

import importlib.util
import os

import pandas as pd
import pytest
import torch

from benchkit.cli import main
from benchkit.execution.executors import visible_gpus
from benchkit.io import read_json
from conftest import REPO, TINY_PLUGIN, small_experiment

DYING_PLUGIN = REPO / "tests" / "plugins" / "dying_head.py"
FAULTY_PLUGIN = REPO / "tests" / "plugins" / "faulty.py"
GRID = {"backbone.dropout": [0.0, 0.3]}
COMPARED = ["seed", "dropout", "epochs", "best_epoch", "status"]
HAS_RAY = importlib.util.find_spec("ray") is not None
THREADS = 1 if torch.get_num_threads() > 1 else 2


def _board(out) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv").set_index("run_id").sort_index()


def _assert_same_rows(board: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(board.index) == list(reference.index)
    assert (board.status == "ok").all()
    metrics = [c for c in reference if c.startswith(("valid_", "test_"))]
    assert len(metrics) > 20
    compared = [c for c in COMPARED if c in reference]
    pd.testing.assert_frame_equal(board[compared], reference[compared])
    pd.testing.assert_frame_equal(board[metrics], reference[metrics], check_exact=False, rtol=1e-9, atol=1e-12)


def _failing_experiment(tmp_path):
    return small_experiment(tmp_path, plugins=[str(TINY_PLUGIN), str(DYING_PLUGIN)], models=[
        {"backbone": "tiny_cnn", "head": "regression"},
        {"name": "raises", "backbone": {"name": "tiny_cnn", "options": {"width": -1}}, "head": "regression"},
        {"name": "dies", "backbone": "tiny_cnn", "head": "dies_in_training"},
    ])


def _assert_failed_rows(out) -> None:
    board = _board(out)
    assert board.loc["tiny_cnn-regression__s0", "status"] == "ok"
    assert board.loc["raises__s0", "status"] == "failed"
    assert "RuntimeError" in board.loc["raises__s0", "error"]
    assert board.loc["dies__s0", "status"] == "failed"
    assert "task lost" in board.loc["dies__s0", "error"]
    assert (out / "runs" / "dies__s0" / "error.log").is_file()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    # every executor runs a run with resources.cpus torch threads: here a count unlike this process's own,
    # so that a run using the process's count in any executor gives other numbers; augmentation and dropout
    # on, so that each executor must draw them from the run's seed alone (tests/test_seeds.py)
    train = {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 3e-3}, "ema": {"enabled": False},
             "early_stopping": {"patience": 5}, "augmentation": [{"RandomRotation": {"degrees": 20.0, "p": 0.7}},
                                                                {"RandomBrightness": {"brightness": [0.8, 1.2]}}]}
    return small_experiment(tmp, grid=GRID, seeds=[0, 1], resources={"cpus": THREADS}, train=train)


@pytest.fixture(scope="module")
def local_out(grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    assert main(["run", str(grid), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def local_ray():
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install 'benchkit[ray]')")
    import ray
    # one GPU declared (a real one where present): runs asking for a fraction of it are packed on it
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_local_grid_has_four_finished_runs(local_out):
    board = _board(local_out)
    assert len(board) == 4 and (board.status == "ok").all()
    assert sorted(board.seed.unique()) == [0, 1] and sorted(board.dropout.unique()) == [0.0, 0.3]


def _threads(out) -> set:
    return {read_json(p)["environment"]["torch_threads"] for p in (out / "runs").glob("*/details.json")}


def test_every_executor_runs_with_resources_cpus_threads_and_restores_the_count(local_out):
    assert _threads(local_out) == {THREADS}
    assert torch.get_num_threads() != THREADS  # the in-process run put this process's count back


def _visible_devices(out) -> list:
    return [read_json(p)["environment"]["cuda_visible_devices"] for p in sorted((out / "runs").glob("*/details.json"))]


def test_two_local_processes_give_the_same_rows_placed_round_robin_over_gpus(grid, local_out, tmp_path,
                                                                              monkeypatch):
    gpus = visible_gpus() or ["3", "5"]  # without CUDA the placement is still made, and harmless
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(gpus))
    out = tmp_path / "jobs"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--jobs", "2"]) == 0
    _assert_same_rows(_board(out), _board(local_out))
    assert _threads(out) == {THREADS}
    # the first two runs go to the two workers at once, so both placements are used
    assert set(_visible_devices(out)) == set(gpus[:2])


def test_every_run_reports_its_peak_memory(local_out):
    board = _board(local_out)
    assert (board.peak_rss_mb > 10).all()  # a process holding torch is far above 10 MB
    if not torch.cuda.is_available():
        assert board.peak_gpu_mb.isna().all()


def test_a_packed_run_that_runs_out_of_memory_is_a_failed_row_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", (visible_gpus() or ["0"])[0])  # both workers share one GPU
    experiment = small_experiment(tmp_path, plugins=[str(TINY_PLUGIN), str(FAULTY_PLUGIN)], models=[
        {"backbone": "tiny_cnn", "head": "regression"},
        {"name": "hungry", "backbone": {"name": "oom_cnn", "options": {"max_batch": 4}}, "head": "regression"},
        {"backbone": "tiny_cnn", "head": "softmax"},
    ])
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--jobs", "2"]) == 1
    board = _board(out)
    assert board.loc["hungry__s0", "status"] == "failed"
    error = board.loc["hungry__s0", "error"]
    assert error.startswith("out of memory with batch_size 16") and "train.batch_size=8" in error
    assert "fewer runs per GPU (--jobs; 2 share this one)" in error
    assert (board.drop(index="hungry__s0").status == "ok").all() and len(board) == 3


def test_local_processes_turn_raising_and_dying_runs_into_failed_rows(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(_failing_experiment(tmp_path)), "--out", str(out), "--quiet", "--jobs", "2"]) == 1
    _assert_failed_rows(out)


def test_ray_gives_the_same_rows_as_local(local_ray, grid, local_out, tmp_path):
    out = tmp_path / "ray"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--executor", "ray"]) == 0
    _assert_same_rows(_board(out), _board(local_out))
    assert _threads(out) == {THREADS}
    assert local_ray.is_initialized()  # a Ray the caller started is left running


def test_ray_turns_raising_and_dying_runs_into_failed_rows(local_ray, tmp_path):
    out = tmp_path / "out"
    code = main(["run", str(_failing_experiment(tmp_path)), "--out", str(out), "--quiet", "--executor", "ray"])
    assert code == 1
    _assert_failed_rows(out)


def test_ray_packs_runs_asking_for_a_fraction_of_a_gpu_on_the_same_gpu(local_ray, tmp_path):
    experiment = small_experiment(tmp_path, grid={"backbone.dropout": [0.0, 0.3]},
                                  resources={"cpus": 1, "gpus": 0.5})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--executor", "ray"]) == 0
    assert (_board(out).status == "ok").all()
    assert _visible_devices(out) == ["0", "0"]  # Ray gave both halves of GPU 0


def test_ray_resumes_a_local_output_folder_and_keeps_finished_runs(local_ray, grid, local_out, tmp_path):
    import shutil
    out = tmp_path / "mixed"
    shutil.copytree(local_out, out)
    redo = "tiny_cnn-regression__dropout=0.3__s1"
    (out / "runs" / redo / "metrics.json").unlink()
    stamps = {p.parent.name: os.stat(p).st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--executor", "ray"]) == 0
    after = {p.parent.name: os.stat(p).st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}
    assert {k: after[k] for k in stamps} == stamps and redo in after
    _assert_same_rows(_board(out), _board(local_out))


def test_unknown_executor_and_bad_jobs_are_usage_errors(grid, tmp_path):
    with pytest.raises(SystemExit):
        main(["run", str(grid), "--executor", "slurm"])
    assert main(["run", str(grid), "--out", str(tmp_path / "o"), "--jobs", "0"]) == 2


@pytest.mark.slow
def test_the_quickstart_gives_one_leaderboard_in_process_in_two_processes_and_on_ray(local_ray, tmp_path):
    """The shipped quickstart (its backbones and heads), shrunk by overrides, with a thread count unlike this
    process's own (as on a machine whose core count differs from the quickstart's ``resources.cpus``)."""
    quickstart = REPO / "experiments" / "quickstart.yaml"
    shrink = ["train.epochs=2", "data.synthetic.train=48", "data.synthetic.valid=24", "data.synthetic.test=24",
              "evaluation.bootstrap.n_resamples=200", "evaluation.plots=false", f"resources.cpus={THREADS}"]
    boards = {}
    for name, flags in {"here": [], "jobs": ["--jobs", "2"], "ray": ["--executor", "ray"]}.items():
        out = tmp_path / name
        assert main(["run", str(quickstart), "--out", str(out), "--quiet", *flags, *shrink]) == 0
        boards[name] = _board(out)
        assert _threads(out) == {THREADS}
    assert len(boards["here"]) == 3
    _assert_same_rows(boards["jobs"], boards["here"])
    _assert_same_rows(boards["ray"], boards["here"])
