"""Outputs that cannot be written: each a one-line message naming the file or folder, and nothing half-written.

Read-only folders are simulated in a way root also hits: the command runs in a subprocess without the
capabilities that let root write anywhere (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH dropped from its
bounding set before exec), and a probe write under the same regime must fail first. Full disks are
simulated with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored): writes past it fail with EFBIG.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from benchkit.cli import main
from benchkit.io import read_json
from benchkit_process import ENV
from conftest import small_experiment

_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2
QUIET_ENV = {**ENV, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="permission and file-size limits as on Linux")


def _without_root_overrides() -> None:
    """preexec_fn: as root, give up the capabilities that bypass file permissions (kept out after exec)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored signals stay ignored across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _benchkit(*args: str, preexec_fn) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchkit.cli", *args], capture_output=True, text=True,
                          env=QUIET_ENV, preexec_fn=preexec_fn, timeout=300)


def _make_read_only(folder: Path) -> None:
    """Remove write permission everywhere under ``folder`` and check that a write there now fails."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    probe = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'w')", str(folder / "probe")],
                           capture_output=True, text=True, preexec_fn=_without_root_overrides)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr, "the folder is still writable"


def _one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def _temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A finished results folder of one small run."""
    base = tmp_path_factory.mktemp("results")
    out = base / "out"
    assert main(["run", str(small_experiment(base)), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def results_copy(results, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(results, copy)
    return copy


def test_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    assert main(["run", str(small_experiment(tmp_path)), "--out", str(taken), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{taken} is an existing file, not a folder" in err
    assert taken.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["experiment.yaml",
                                                                                            "notes.txt"]


def test_out_inside_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    assert main(["run", str(small_experiment(tmp_path)), "--out", str(taken / "out"), "--quiet"]) == 2
    assert f"{taken} is a file, so the folder {taken / 'out'} cannot be created" in capsys.readouterr().err


def test_out_in_a_read_only_folder_is_refused(tmp_path):
    experiment = small_experiment(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    _make_read_only(locked)
    err = _one_line_error(_benchkit("run", str(experiment), "--out", str(locked / "out"), "--quiet",
                                    preexec_fn=_without_root_overrides))
    assert f"cannot write the results to {locked / 'out'}: {locked} is read-only" in err
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", ["leaderboard", "report"])
def test_leaderboard_and_report_on_a_read_only_results_folder(results_copy, command):
    before = {p: p.stat().st_mtime_ns for p in results_copy.rglob("*")}
    _make_read_only(results_copy)
    err = _one_line_error(_benchkit(command, str(results_copy), preexec_fn=_without_root_overrides))
    assert f"{results_copy} is read-only" in err
    assert {p: p.stat().st_mtime_ns for p in results_copy.rglob("*")} == before


def test_a_checkpoint_past_the_file_size_limit_fails_its_run_naming_the_file(tmp_path):
    experiment = small_experiment(tmp_path, evaluation={"bootstrap": {"n_resamples": 0}, "plots": False})
    out = tmp_path / "out"
    result = _benchkit("run", str(experiment), "--out", str(out), "--quiet", preexec_fn=_file_size_limit(64_000))
    assert result.returncode == 1, result.stderr
    run_dir = out / "runs" / "tiny_cnn-regression__s0"
    row = pd.read_csv(out / "leaderboard.csv").iloc[0]
    assert row.status == "failed" and row.error == f"OutputError: cannot write {run_dir / 'last.pt'}: File too large"
    assert read_json(run_dir / "metrics.json")["row"]["error"] == row.error
    assert not (run_dir / "last.pt").exists() and not (run_dir / "best.safetensors").exists()
    assert _temporary_files(out) == []


def test_a_workbook_past_the_file_size_limit_is_named_and_the_old_one_kept(results_copy):
    xlsx, csv = results_copy / "leaderboard.xlsx", results_copy / "leaderboard.csv"
    old = xlsx.read_bytes()
    assert csv.stat().st_size < 4096 < len(old)
    err = _one_line_error(_benchkit("leaderboard", str(results_copy), preexec_fn=_file_size_limit(4096)))
    assert err == f"error: cannot write {xlsx}: File too large\n"
    assert xlsx.read_bytes() == old and load_workbook(xlsx)["test"].max_row == 2
    assert _temporary_files(results_copy) == []
