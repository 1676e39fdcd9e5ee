"""Several ``benchkit run`` processes on one output folder: every run trained once, listed once."""

import re

import pandas as pd

from benchkit.execution.claims import claim
from benchkit_process import start
from conftest import small_experiment

SEEDS = [0, 1, 2, 3]


def test_two_processes_over_one_grid_train_and_list_every_run_once(tmp_path):
    experiment = small_experiment(tmp_path, seeds=SEEDS)
    out = tmp_path / "out"
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    processes = [start(experiment, out, log) for log in logs]
    try:
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    expected = [f"tiny_cnn-regression__s{seed}" for seed in SEEDS]
    trained = [run_id for text in texts for run_id in re.findall(r"^(\S+): training up to", text, re.M)]
    assert sorted(trained) == expected, texts
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board.run_id) == expected and (board.status == "ok").all()
    for run_id in expected:
        assert (out / "runs" / run_id / "metrics.json").is_file()


def test_a_claimed_run_is_refused_to_others_until_released(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    with claim(run_dir) as first:
        with claim(run_dir) as second:
            assert first and not second
    with claim(run_dir) as again:
        assert again


def test_two_fresh_processes_over_a_finished_grid_train_every_run_once_more(tmp_path):
    experiment = small_experiment(tmp_path, seeds=SEEDS[:2])
    out = tmp_path / "out"
    assert start(experiment, out, tmp_path / "first.log").wait(timeout=300) == 0
    logs = [tmp_path / f"fresh{i}.log" for i in range(2)]
    processes = [start(experiment, out, log, "--fresh") for log in logs]
    try:
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    expected = [f"tiny_cnn-regression__s{seed}" for seed in SEEDS[:2]]
    trained = [run_id for text in texts for run_id in re.findall(r"^(\S+): training up to", text, re.M)]
    assert sorted(trained) == expected, texts
    assert sorted(pd.read_csv(out / "leaderboard.csv").run_id) == expected
