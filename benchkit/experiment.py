"""An experiment: expand the YAML into runs, run the unfinished ones, write the leaderboard.

Re-running the same command on an existing output folder skips finished runs and continues
interrupted ones from their last checkpoint. Runs are claimed with a lock file, so several
processes can share one output folder without running (or listing) a run twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from rich.table import Table

from benchkit.aggregate import aggregated_table, summary_views
from benchkit.config import ExperimentConfig, RunSpec, dump_yaml, expand_runs, load_experiment
from benchkit.io import write_text
from benchkit.leaderboard import build_leaderboard, rich_table, write_leaderboard
from benchkit.model import build_model, count_parameters
from benchkit.progress import console, log_console
from benchkit.registry import import_plugins
from benchkit.runner import execute_run, read_run_row, run_dir_of


def plan(path: str | Path, overrides: list[str] = ()) -> tuple[ExperimentConfig, list[RunSpec]]:
    """Load and validate an experiment file and expand it into runs (plugins imported first)."""
    path = Path(path)
    config = load_experiment(path, overrides)
    import_plugins(config.plugins, path.parent)
    return config, expand_runs(config, base_dir=path.parent.resolve())


def default_out_dir(config: ExperimentConfig) -> Path:
    return config.output_dir or Path("results") / config.name


def dry_run(runs: list[RunSpec], num_classes: int | None = None) -> Table:
    """Build every model (architecture only, no weights) and tabulate parameter counts."""
    table = Table(title=f"{len(runs)} run(s)", header_style="bold cyan")
    for col in ("run_id", "backbone", "head", "seed", "params_total", "params_trainable", "weights"):
        table.add_column(col, justify="right" if col.startswith("params") else "left")
    built: dict[str, dict] = {}
    for spec in runs:
        key = spec.model.model_dump_json()
        if key not in built:
            arch = spec.model.model_copy(deep=True)
            arch.backbone.pretrained, arch.backbone.weights = False, None
            k = num_classes or (spec.data.synthetic.num_classes if spec.data.format == "synthetic"
                                else len(spec.data.classes or []) or 6)
            built[key] = count_parameters(build_model(arch, k))
        counts = built[key]
        weights = ("local file" if spec.model.backbone.weights else
                   "pretrained" if spec.model.backbone.pretrained else "random init")
        table.add_row(spec.run_id, spec.model.backbone.name, spec.model.head.name, str(spec.seed),
                      f"{counts['total']:,}", f"{counts['trainable']:,}", weights)
    return table


def run_experiment(config: ExperimentConfig, runs: list[RunSpec], out_dir: Path, *,
                   quiet: bool = False, fresh: bool = False, refuse_changed: bool = False) -> pd.DataFrame:
    """Run every unfinished run in order and return the leaderboard."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "experiment.yaml", dump_yaml(config.model_dump(mode="json")))
    for i, spec in enumerate(runs, start=1):
        run_dir = run_dir_of(out_dir, spec.run_id)
        if fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        if _finished(run_dir):
            log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: finished earlier, skipped")
            continue
        with claim(run_dir) as claimed:
            if not claimed:
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: running in another process, skipped")
                continue
            if _finished(run_dir):
                continue
            resume = _prepare_resume(spec, run_dir, refuse_changed)
            log_console.print(f"[{i}/{len(runs)}] {spec.run_id}" + (" (resuming)" if resume else ""))
            row = execute_run(spec, out_dir, quiet=quiet, resume=resume)
            if row["status"] != "ok":
                log_console.print(f"[red]run {spec.run_id} failed:[/] {row['error']}")
        refresh_leaderboard(config, out_dir)
    frame = refresh_leaderboard(config, out_dir)
    console.print(rich_table(frame, f"{config.name}: leaderboard ({out_dir})"))
    if (out_dir / "leaderboard_aggregated.csv").is_file():
        aggregated = pd.read_csv(out_dir / "leaderboard_aggregated.csv")
        console.print(aggregated_table(aggregated, f"{config.name}: across seeds and folds"))
    return frame


def refresh_leaderboard(config: ExperimentConfig, out_dir: Path) -> pd.DataFrame:
    """Rebuild the leaderboard files from the run folders, under a lock."""
    with _file_lock(out_dir / ".leaderboard.lock"):
        frame = build_leaderboard(out_dir, config.evaluation.sort_by)
        sheets = summary_views(frame, out_dir, config.evaluation)
        write_leaderboard(frame, out_dir, config_text=dump_yaml(config.model_dump(mode="json")),
                          extra_sheets=sheets)
    return frame


def _finished(run_dir: Path) -> bool:
    row = read_run_row(run_dir)
    return row is not None and row.get("status") == "ok"


def _prepare_resume(spec: RunSpec, run_dir: Path, refuse_changed: bool) -> bool:
    """Whether a checkpoint of the same config exists; a changed config is said and started fresh."""
    checkpoint, saved = run_dir / "last.pt", run_dir / "config.yaml"
    if not checkpoint.is_file():
        return False
    if saved.is_file() and saved.read_text(encoding="utf-8") != dump_yaml(spec.model_dump(mode="json")):
        if refuse_changed:
            from benchkit.errors import ConfigError
            raise ConfigError(f"{spec.run_id}: its config changed since the checkpoint in {run_dir}; "
                              f"run with --fresh or restore the old config")
        log_console.print(f"[yellow]{spec.run_id}: config changed since its checkpoint; starting it fresh[/]")
        checkpoint.unlink()
        (run_dir / "metrics.json").unlink(missing_ok=True)
        return False
    return True


@contextmanager
def claim(run_dir: Path):
    """Yield True if this process holds the run's lock file (stale locks of dead processes are taken)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    me = f"{socket.gethostname()}:{os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _lock_is_stale(lock):
                lock.unlink(missing_ok=True)
                continue
            yield False
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _lock_is_stale(lock: Path) -> bool:
    try:
        host, pid = lock.read_text().rsplit(":", 1)
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):
        return False
    return False


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
