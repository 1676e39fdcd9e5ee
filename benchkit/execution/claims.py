"""Which runs of a results folder still need to run, and the claim a process holds while it runs one.

A run is finished when its ``metrics.json`` says ``status: ok`` and its saved config matches the run (keys in
:data:`UNCHECKED_CHANGES` aside); an interrupted run resumes from its resume state, a changed one starts fresh.
Runs are claimed with a lock the operating system releases when its holder exits, so several processes can
share one output folder without running a run twice. A finished run that a tracker did not fully receive is
sent to it from its files, without training (:func:`complete_tracking_of`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import ValidationError

from benchkit.config.schema import RunSpec
from benchkit.errors import ConfigError
from benchkit.inference.export import export_run
from benchkit.io import file_lock, load_torch, remove_temporary_files
from benchkit.progress import log_console
from benchkit.results import run_folder
from benchkit.results.run_folder import run_dir_of
from benchkit.results.tracking import TRACKER_NAMES, complete_tracking, untracked

UNCHECKED_CHANGES = ("experiment", "evaluation.sort_by", "evaluation.reference", "resources", "tracking",
                     "build", "train.keep_resume_state")
"""Config keys that do not change a run's results: editing them keeps finished and interrupted runs.
``build`` is derived from the checked keys and the data, and resolved only for the runs that run."""


def config_changes(spec: RunSpec, run_dir: Path) -> list[str]:
    """How the config saved in ``run_dir`` differs from ``spec``, as ``key: old -> new`` lines.

    Empty when the folder holds no checkpoint or result to keep, or only keys in
    :data:`UNCHECKED_CHANGES` differ.
    """
    saved = run_folder.read_config(run_dir)
    if not saved or not any((run_dir / f).is_file() for f in (run_folder.RESUME_STATE, run_folder.METRICS)):
        return []
    old = _flatten(_with_defaults(saved))
    new = _flatten(spec.model_dump(mode="json"))
    missing = "<absent>"
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in sorted(old.keys() | new.keys())
            if old.get(key, missing) != new.get(key, missing)
            and not any(key == k or key.startswith(k + ".") for k in UNCHECKED_CHANGES)]


def _with_defaults(saved: dict) -> dict:
    """A saved config with the defaults of keys added since it was written (a key a later version added with
    its old behaviour as default is no change); as saved when it no longer validates."""
    try:
        return RunSpec.model_validate(saved).model_dump(mode="json")
    except (ValidationError, ValueError, TypeError):
        return saved


def _flatten(node, prefix: str = "") -> dict:
    """Nested mappings as ``{"a.b.c": leaf}``; lists and empty mappings are leaves."""
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def finished(spec: RunSpec, run_dir: Path) -> bool:
    """The run's folder holds its finished results, made with the same config."""
    row = run_folder.read_row(run_dir)
    return row is not None and row.get("status") == "ok" and not config_changes(spec, run_dir)


def finished_since(spec: RunSpec, run_dir: Path, since: float) -> bool:
    """Finished (``--fresh``: by a concurrent process) after ``since``, a ``time.time()`` value."""
    metrics = run_dir / run_folder.METRICS
    return finished(spec, run_dir) and metrics.stat().st_mtime >= since


def empty_run_dir(run_dir: Path) -> None:
    """Delete everything a run wrote, keeping the lock file its claim holds."""
    for path in run_dir.iterdir():
        if path.name != run_folder.LOCK:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def refuse_changed_runs(runs: list[RunSpec], out_dir: Path) -> None:
    changed = [(spec.run_id, changes) for spec in runs
               if (changes := config_changes(spec, run_dir_of(out_dir, spec.run_id)))]
    if changed:
        lines = [f"- {run_id}: {'; '.join(changes[:3])}" + (f"; ... {len(changes) - 3} more" if len(changes) > 3
                                                           else "") for run_id, changes in changed]
        raise ConfigError(f"{len(changed)} run(s) in {out_dir} were made with another config "
                          f"(--refuse-changed):\n" + "\n".join(lines)
                          + "\nrestore the old config, or run with --fresh to start them over")


def prepare_resume(spec: RunSpec, run_dir: Path) -> bool:
    """Whether to resume from the resume state; a run whose config changed is said and started fresh."""
    changes = config_changes(spec, run_dir)
    if changes:
        log_console.print(f"[yellow]{spec.run_id}: config changed since its earlier checkpoint or results "
                          f"({'; '.join(changes[:3])}); starting it fresh[/]")
        empty_run_dir(run_dir)
    remove_temporary_files(run_dir)
    checkpoint = run_dir / run_folder.RESUME_STATE
    if not checkpoint.is_file():
        return False
    try:
        load_torch(checkpoint, mmap=True)
    except Exception as exc:  # truncated/corrupted by the disk or a copy: nothing in it can be trusted
        log_console.print(f"[yellow]{spec.run_id}: its checkpoint {checkpoint} cannot be read "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          f"starting it fresh[/]")
        checkpoint.unlink()
        return False
    return True


def claim(run_dir: Path):
    """A context manager yielding True if this process now holds the run's lock (``run_dir/.lock``).

    The operating system releases the lock when its holder exits or is killed
    (:func:`benchkit.io.file_lock`), so a crashed run never blocks its own resumption.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    return file_lock(run_dir / run_folder.LOCK, wait=False)


def complete_tracking_of(spec: RunSpec, run_dir: Path, out_dir: Path, given_up: set[str]) -> str:
    """Send a finished run to the trackers that did not receive all of it, from its files (no training), while
    this process holds its claim; what to say of it ("" when nothing was due). Trackers that still do not answer
    join ``given_up``, which this command does not ask again (the end-of-grid warning names their runs)."""
    due = [key for key in untracked(run_dir, spec.tracking) if key not in given_up]
    if not due:
        return ""
    with claim(run_dir) as held:
        if not held:
            return ""
        left = complete_tracking(spec, out_dir, export=export_run, only=due)
    sent, failed = [k for k in due if k not in left], [k for k in due if k in left]
    given_up.update(failed)
    return "".join([f"; sent to {', '.join(TRACKER_NAMES[k] for k in sent)} from its files (no training)"
                    if sent else "",
                    f"; {', '.join(TRACKER_NAMES[k] for k in failed)} did not answer" if failed else ""])
