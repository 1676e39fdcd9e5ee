"""Strip the resume state from the finished runs of a results folder (``benchkit clean``).

A finished run (``metrics.json`` says ``status: ok``) never reads its resume state again: a re-run skips it and a
changed config starts it fresh. Folders written before the resume state was dropped at the end of a run, or runs
with ``train.keep_resume_state``, still hold it; this removes it, under the run's lock, so a process running the
run at that moment is left alone. Failed and interrupted runs keep theirs, to resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchkit.io import file_lock
from benchkit.results import results_folder, run_folder


@dataclass
class CleanReport:
    """What :func:`clean_results` did: the bytes freed and the runs it cleaned, left alone or found busy."""

    freed_bytes: int = 0
    cleaned: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"freed_bytes": self.freed_bytes, "cleaned": self.cleaned, "unfinished": self.unfinished,
                "busy": self.busy}


def clean_results(out_dir: str | Path, dry_run: bool = False) -> CleanReport:
    """Remove the resume state of every finished run of ``out_dir`` (``dry_run``: only count its bytes)."""
    runs = results_folder.runs_dir(results_folder.require_results_folder(out_dir))
    report = CleanReport()
    for run_dir in sorted(path for path in runs.iterdir() if path.is_dir()):
        if not run_folder.has_resume_state(run_dir):
            continue
        with file_lock(run_dir / run_folder.LOCK, wait=False) as held:
            if not held:
                report.busy.append(run_dir.name)
            elif not run_folder.is_finished(run_dir):
                report.unfinished.append(run_dir.name)
            else:
                report.freed_bytes += (run_folder.resume_state_path(run_dir).stat().st_size if dry_run
                                       else run_folder.discard_resume_state(run_dir))
                report.cleaned.append(run_dir.name)
    return report
