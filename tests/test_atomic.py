"""Atomic outputs: a writer interrupted at any instant leaves the old file or the new one, never half of one."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from openpyxl import load_workbook

from benchkit.io import atomic_path, load_torch, remove_temporary_files, save_torch, write_json, write_text
from benchkit.results.leaderboard import write_leaderboard
from benchkit_process import ENV


class _FailsWhenPickled:
    def __reduce__(self):
        raise RuntimeError("interrupted mid-write")


def _frame(version: int, rows: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"run_id": [f"run{i}" for i in range(rows)], "test_mae": [version + i / rows for i in range(rows)],
                         "status": ["ok"] * rows})


def _temporary_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_interrupted_text_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"row": {"status": "ok"}})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"row": {"sta')
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"row": {"status": "ok"}}
    with pytest.raises(TypeError):
        write_json(path, {"row": object()})
    assert json.loads(path.read_text()) == {"row": {"status": "ok"}}
    assert _temporary_files(tmp_path) == []


def test_interrupted_checkpoint_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    old = {"model": {"w": torch.arange(10.0)}, "epoch": 3}
    save_torch(path, old)
    with pytest.raises(RuntimeError, match="mid-write"):
        save_torch(path, {"model": {"w": torch.zeros(100_000)}, "epoch": 4, "rng": _FailsWhenPickled()})
    loaded = load_torch(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], old["model"]["w"])
    assert _temporary_files(tmp_path) == []


def test_interrupted_leaderboard_write_keeps_valid_files(tmp_path, monkeypatch):
    write_leaderboard(_frame(1), tmp_path)

    def half_then_fail(self, filename):
        with open(filename, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr("openpyxl.Workbook.save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_leaderboard(_frame(2), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "leaderboard.csv"), _frame(2))
    sheet = load_workbook(tmp_path / "leaderboard.xlsx")["test"]
    assert sheet.cell(row=2, column=2).value == pytest.approx(1.0)
    assert _temporary_files(tmp_path) == []


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


WRITER = """
import importlib.util, sys, torch, pandas as pd
from benchkit.io import save_torch
from benchkit.results.leaderboard import write_leaderboard
out, kill_switch = sys.argv[1], sys.argv[2]
frames = [pd.DataFrame({"run_id": [f"run{i}" for i in range(400)], "test_mae": [v + i / 400 for i in range(400)],
                        "status": ["ok"] * 400}) for v in (1, 2)]
checkpoints = [{"epoch": v, "model": {"w": torch.full((500_000,), float(v))}} for v in (1, 2)]
write_leaderboard(frames[0], out)
save_torch(out + "/last.pt", checkpoints[0])
spec = importlib.util.spec_from_file_location("kill_switch", kill_switch)
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # armed: BENCHKIT_TEST_KILL=write:NAME:1
write_leaderboard(frames[1], out)
save_torch(out + "/last.pt", checkpoints[1])
"""
KILL_SWITCH = Path(__file__).resolve().parent / "plugins" / "kill_switch.py"


@pytest.mark.parametrize("killed", ["leaderboard.csv", "leaderboard.xlsx", "last.pt"])
def test_writer_killed_inside_a_write_leaves_valid_files(tmp_path, killed):
    """A process that rewrites the leaderboard and a checkpoint is SIGKILLed inside the write of ``killed``
    (half of the new file written): every file is whole, the killed one still the old version, the others the
    old or the new one, and the killed writer's temporary file is what ``remove_temporary_files`` clears."""
    writer = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), str(KILL_SWITCH)], capture_output=True,
                            text=True, env={**ENV, "BENCHKIT_TEST_KILL": f"write:{killed}:1"}, timeout=120)
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(board) == 400 and board.test_mae.iloc[0] in (1.0, 2.0)
    sheet_version = load_workbook(tmp_path / "leaderboard.xlsx")["test"].cell(row=2, column=2).value
    assert sheet_version in (1.0, 2.0)
    checkpoint = load_torch(tmp_path / "last.pt")
    assert torch.equal(checkpoint["model"]["w"], torch.full((500_000,), float(checkpoint["epoch"])))
    versions = {"leaderboard.csv": board.test_mae.iloc[0], "leaderboard.xlsx": sheet_version,
                "last.pt": checkpoint["epoch"]}
    assert versions[killed] == 1
    strays = _temporary_files(tmp_path)
    assert len(strays) == 1 and strays[0].startswith(f".{killed}."), strays
    assert [p.name for p in remove_temporary_files(tmp_path)] == strays
    assert _temporary_files(tmp_path) == []
