"""Rebuilding a results folder's leaderboard files from its run folders, under a lock.

The leaderboard is rebuilt after every run (and by ``benchkit leaderboard``): rows from the run folders,
the ensembles built from their predictions, the summary views, then the CSV and the workbook, all under
one lock so that concurrent writers never interleave.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchkit.io import file_lock, remove_temporary_files
from benchkit.results import results_folder
from benchkit.results.aggregate import summary_views, with_ensembles
from benchkit.results.leaderboard import build_leaderboard, order_columns, sort_rows, write_leaderboard


def rebuild_leaderboard(out_dir: Path, evaluation, config_text: str | None,
                        xlsx_path: Path | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Leaderboard, aggregated view and pivot from the run folders, written under the leaderboard lock;
    returns the leaderboard and its extra sheets."""
    with file_lock(Path(out_dir) / results_folder.LEADERBOARD_LOCK):
        remove_temporary_files(out_dir, "leaderboard")
        frame = with_ensembles(build_leaderboard(out_dir, evaluation.sort_by), out_dir, evaluation)
        frame = sort_rows(order_columns(frame), evaluation.sort_by)
        sheets = summary_views(frame, out_dir, evaluation)
        write_leaderboard(frame, out_dir, xlsx_path=xlsx_path, config_text=config_text, extra_sheets=sheets)
    return frame, sheets
