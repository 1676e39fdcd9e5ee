"""An experiment: expand the YAML into runs, run the unfinished ones, write the leaderboard.

Before any training every pending run's data is read and its model built, so a bad dataset, weights
file or plugin name stops the experiment with exit status 2 and writes nothing. Re-running the same
command on an existing output folder skips finished runs and continues interrupted ones from their
last checkpoint; a run whose config changed since then is said and started fresh (or refused).
Runs are claimed with a lock, so several processes can share one output folder without running
(or listing) a run twice.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from rich.table import Table

from benchkit.results.ensembles import EnsemblePlan, plan_ensembles
from benchkit.training.tta import build_views, tta_label
from benchkit.results.aggregate import aggregated_table, config_columns, config_labels, summary_views, with_ensembles
from benchkit.config.schema import ExperimentConfig, RunSpec, dump_yaml
from benchkit.config.validation import load_experiment
from benchkit.config.expansion import expand_runs
from benchkit.errors import BenchkitError, ConfigError, DataError, OutputError
from benchkit.execution.executors import Executor, LocalExecutor, RunTask
from benchkit.io import file_lock, folder_write_problem, load_torch, remove_temporary_files, write_text
from benchkit.results.leaderboard import build_leaderboard, order_columns, rich_table, sort_rows, write_leaderboard
from benchkit.models.freezing import parameter_counts
from benchkit.models.grader import forget_kept_models, keep_model_for, model_for, resolve_build
from benchkit.results.plots import try_plots, write_experiment_plots
from benchkit.progress import RunsInFlight, console, log_console
from benchkit.registry import import_plugins
from benchkit.data.prepare import load_dataset, prepare_dataset
from benchkit.results import run_folder
from benchkit.results.run_folder import base_row, run_dir_of

UNCHECKED_CHANGES = ("experiment", "evaluation.sort_by", "evaluation.reference", "resources", "tracking",
                     "build")
"""Config keys that do not change a run's results: editing them keeps finished and interrupted runs.
``build`` is derived from the checked keys and the data, and resolved only for the runs that run."""


def plan(source: str | Path | Mapping, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, list[RunSpec]]:
    """Load and validate an experiment (a file, or a mapping whose relative paths are taken from the
    current folder) and expand it into runs (plugins imported first)."""
    folder = Path.cwd() if isinstance(source, Mapping) else Path(source).parent
    config = load_experiment(source, overrides)
    import_plugins(config.plugins, folder)
    try:
        runs = expand_runs(config, base_dir=folder.resolve())
        build_views(config.evaluation.tta)
        planned_ensembles(config, runs)
    except ConfigError as exc:
        raise ConfigError(f"{source if not isinstance(source, Mapping) else '<experiment>'}: {exc}") from None
    return config, runs


def planned_ensembles(config: ExperimentConfig, runs: list[RunSpec]) -> list[EnsemblePlan]:
    """The ensemble rows ``evaluation.ensembles`` will add once every run has finished.

    ConfigError when a member of a named ensemble names no model, configuration label or run.
    """
    if not config.evaluation.ensembles or not runs:
        return []
    frame = pd.DataFrame([{**base_row(spec), "status": "ok"} for spec in runs])
    columns = config_columns(frame)
    labels = config_labels(frame, columns)
    for item in config.evaluation.ensembles:
        unknown = [m for m in getattr(item, "members", [])
                   if not (frame["model"].eq(m).any() or labels.eq(m).any() or frame["run_id"].eq(m).any())]
        if unknown:
            raise ConfigError(f"evaluation.ensembles {item.name!r}: {unknown} name no model, configuration "
                              f"label or run id of this experiment (models: {sorted(frame['model'].unique())})")
    return plan_ensembles(frame, config.evaluation.ensembles, columns, labels)


def describe_evaluation(config: ExperimentConfig, runs: list[RunSpec]) -> list[str]:
    """Lines for ``--dry-run``: the test-time augmentation and the ensemble rows to come."""
    lines = [f"test-time augmentation: {tta_label(config.evaluation.tta)}"]
    for plan in planned_ensembles(config, runs):
        lines.append(f"ensemble {plan.run_id}: mean of {len(plan.members)} run(s): "
                     + ", ".join(plan.members["run_id"]))
    return lines


def default_out_dir(config: ExperimentConfig) -> Path:
    return config.output_dir or Path("results") / config.name


def dry_run(runs: list[RunSpec]) -> Table:
    """Build every model (architecture only, no weights) and tabulate parameter counts.

    The class count comes from the data where it can be read, else from ``data.classes``.
    """
    table = Table(title=f"{len(runs)} run(s)", header_style="bold cyan")
    for col in ("run_id", "backbone", "head", "seed", "params_total", "params_trainable", "weights"):
        table.add_column(col, justify="right" if col.startswith("params") else "left")
    built: dict[str, dict] = {}
    for spec in runs:
        spec = resolve_build(spec, _classes_for_dry_run(spec))
        key = json.dumps([spec.model.model_dump(mode="json"), spec.build.model_dump(mode="json")])
        if key not in built:
            built[key] = parameter_counts(model_for(spec, weights=False))
        counts = built[key]
        weights = ("local file" if spec.model.backbone.weights else
                   "pretrained" if spec.model.backbone.pretrained else "random init")
        table.add_row(spec.run_id, spec.model.backbone.name, spec.model.head.name, str(spec.seed),
                      f"{counts['total']:,}", f"{counts['trainable']:,}", weights)
    return table


def _classes_for_dry_run(spec: RunSpec) -> list[str]:
    try:
        return prepare_dataset(spec).classes
    except DataError as exc:
        if not spec.data.classes:
            raise
        log_console.print(f"[yellow]note:[/] data not read ({exc}); {len(spec.data.classes)} classes "
                          f"from data.classes")
        return list(spec.data.classes)


def run_experiment(config: ExperimentConfig, runs: list[RunSpec], out_dir: Path, *,
                   quiet: bool = False, fresh: bool = False, refuse_changed: bool = False,
                   executor: Executor | None = None, started: float | None = None) -> pd.DataFrame:
    """Check the inputs of the unfinished runs, run them through ``executor`` (default: here, in
    order) and return the leaderboard. Each run is claimed just before it is handed over.

    ``fresh`` redoes the runs whose results were written before ``started`` (``time.time()`` when
    the command began; default: now); results a concurrent command wrote since then are kept.
    """
    out_dir = Path(out_dir)
    problem = folder_write_problem(out_dir)
    if problem:
        raise OutputError(f"cannot write the results to {out_dir}: {problem}")
    pending = [spec for spec in runs if fresh or not _finished(spec, run_dir_of(out_dir, spec.run_id))]
    if refuse_changed and not fresh:
        _refuse_changed_runs(pending, out_dir)
    executor = executor or LocalExecutor()
    resolved = {spec.run_id: spec for spec in check_inputs(pending, keep_models=not executor.in_workers)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "experiment.yaml", dump_yaml(config.model_dump(mode="json")))
    claims: dict[str, ExitStack] = {}
    started = time.time() if started is None else started

    def claimed_tasks():
        for i, spec in enumerate(runs, start=1):
            run_dir = run_dir_of(out_dir, spec.run_id)
            if not fresh and _finished(spec, run_dir):
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: finished earlier, skipped")
                continue
            held = claims[spec.run_id] = ExitStack()
            if not held.enter_context(claim(run_dir)):
                claims.pop(spec.run_id).close()
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: running in another process, skipped")
                continue
            if fresh and not _finished_since(spec, run_dir, started):
                _empty_run_dir(run_dir)
            elif _finished(spec, run_dir):  # by another process since this one looked
                claims.pop(spec.run_id).close()
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: finished by another process, skipped")
                continue
            resume = _prepare_resume(spec, run_dir)
            log_console.print(f"[{i}/{len(runs)}] {spec.run_id}" + (" (resuming)" if resume else ""))
            yield RunTask(resolved.get(spec.run_id, spec), out_dir.resolve(), resume=resume, quiet=quiet)

    def finished(task: RunTask, row: dict) -> None:
        claims.pop(task.spec.run_id).close()
        if row["status"] != "ok":
            log_console.print(f"[red]run {task.spec.run_id} failed:[/] {row['error']}")
        refresh_leaderboard(config, out_dir)

    try:
        executor.run(claimed_tasks(), finished, display=RunsInFlight(out_dir, total=len(pending), quiet=quiet))
    finally:
        forget_kept_models()
        for held in claims.values():
            held.close()
    frame, sheets = refresh_leaderboard(config, out_dir)
    if config.evaluation.plots:
        try_plots(write_experiment_plots, out_dir, frame, config.evaluation.sort_by)
    console.print(rich_table(frame, f"{config.name}: leaderboard ({out_dir})"))
    if "aggregated" in sheets:
        console.print(aggregated_table(sheets["aggregated"], f"{config.name}: across seeds and folds"))
    return frame


def refresh_leaderboard(config: ExperimentConfig, out_dir: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Rebuild the leaderboard files from the run folders, under a lock: the leaderboard and its extra sheets."""
    return rebuild_leaderboard(out_dir, config.evaluation, dump_yaml(config.model_dump(mode="json")))


def rebuild_leaderboard(out_dir: Path, evaluation, config_text: str | None,
                        xlsx_path: Path | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Leaderboard, aggregated view and pivot from the run folders, written under the leaderboard lock."""
    with file_lock(Path(out_dir) / ".leaderboard.lock"):
        remove_temporary_files(out_dir, "leaderboard")
        frame = with_ensembles(build_leaderboard(out_dir, evaluation.sort_by), out_dir, evaluation)
        frame = sort_rows(order_columns(frame), evaluation.sort_by)
        sheets = summary_views(frame, out_dir, evaluation)
        write_leaderboard(frame, out_dir, xlsx_path=xlsx_path, config_text=config_text, extra_sheets=sheets)
    return frame, sheets


def check_inputs(runs: list[RunSpec], keep_models: bool = False) -> list[RunSpec]:
    """Read every run's data, resolve its build inputs and build every model (weights included)
    before any training; return the runs with their build inputs resolved.

    Bad data, weights files, backbone or head names and options are raised together as one
    error (exit status 2). Other exceptions are left to the run, which records them as failed.
    ``keep_models`` keeps each model built here for its run (when the runs execute in this process).
    """
    problems: list[BenchkitError] = []
    built: set[str] = set()
    notes: set[str] = set()
    resolved = []
    for spec in runs:
        dataset = _check_data(spec, problems, notes)
        if dataset is not None:
            try:
                spec = resolve_build(spec, dataset.classes, dataset.splits["train"].labels)
                key = json.dumps([spec.model.model_dump(mode="json"), spec.build.model_dump(mode="json")])
                if key not in built:
                    built.add(key)
                    if keep_models:
                        keep_model_for(spec)
                    else:
                        model_for(spec)
            except BenchkitError as exc:
                problems.append(type(exc)(f"model {spec.model_name!r}: {exc}"))
            except Exception:  # a plugin bug: the run itself fails and records the traceback
                pass
        resolved.append(spec)
    if problems:
        forget_kept_models()
        messages = list(dict.fromkeys(str(p) for p in problems))
        raise type(problems[0])(messages[0] if len(messages) == 1 else
                                f"{len(messages)} problems found before training:\n"
                                + "\n".join(f"- {m}" for m in messages))
    return resolved


def _check_data(spec: RunSpec, problems: list[BenchkitError], notes: set[str]):
    """The run's prepared dataset, or None with the problem recorded; the reader's notes said once."""
    try:
        dataset = prepare_dataset(spec)
    except BenchkitError as exc:
        problems.append(exc)
        return None
    source = load_dataset(spec.data, spec.base_dir)
    for note in source.notes + [note for split in source.splits.values() for note in split.notes]:
        if note not in notes:
            notes.add(note)
            log_console.print(f"[yellow]note:[/] {source.root or source.name}: {note}")
    return dataset


def config_changes(spec: RunSpec, run_dir: Path) -> list[str]:
    """How the config saved in ``run_dir`` differs from ``spec``, as ``key: old -> new`` lines.

    Empty when the folder holds no checkpoint or result to keep, or only keys in
    :data:`UNCHECKED_CHANGES` differ.
    """
    saved = run_folder.read_config(run_dir)
    if not saved or not any((run_dir / f).is_file() for f in (run_folder.LAST, run_folder.METRICS)):
        return []
    old = _flatten(saved)
    new = _flatten(spec.model_dump(mode="json"))
    missing = "<absent>"
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in sorted(old.keys() | new.keys())
            if old.get(key, missing) != new.get(key, missing)
            and not any(key == k or key.startswith(k + ".") for k in UNCHECKED_CHANGES)]


def _flatten(node, prefix: str = "") -> dict:
    """Nested mappings as ``{"a.b.c": leaf}``; lists and empty mappings are leaves."""
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def _finished(spec: RunSpec, run_dir: Path) -> bool:
    row = run_folder.read_row(run_dir)
    return row is not None and row.get("status") == "ok" and not config_changes(spec, run_dir)


def _finished_since(spec: RunSpec, run_dir: Path, since: float) -> bool:
    """Finished (``--fresh``: by a concurrent process) after ``since``, a ``time.time()`` value."""
    metrics = run_dir / run_folder.METRICS
    return _finished(spec, run_dir) and metrics.stat().st_mtime >= since


def _empty_run_dir(run_dir: Path) -> None:
    """Delete everything a run wrote, keeping the lock file its claim holds."""
    for path in run_dir.iterdir():
        if path.name != _LOCK_NAME:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _refuse_changed_runs(runs: list[RunSpec], out_dir: Path) -> None:
    changed = [(spec.run_id, changes) for spec in runs
               if (changes := config_changes(spec, run_dir_of(out_dir, spec.run_id)))]
    if changed:
        lines = [f"- {run_id}: {'; '.join(changes[:3])}" + (f"; ... {len(changes) - 3} more" if len(changes) > 3
                                                           else "") for run_id, changes in changed]
        raise ConfigError(f"{len(changed)} run(s) in {out_dir} were made with another config "
                          f"(--refuse-changed):\n" + "\n".join(lines)
                          + "\nrestore the old config, or run with --fresh to start them over")


def _prepare_resume(spec: RunSpec, run_dir: Path) -> bool:
    """Whether to resume from ``last.pt``; a run whose config changed is said and started fresh."""
    changes = config_changes(spec, run_dir)
    if changes:
        log_console.print(f"[yellow]{spec.run_id}: config changed since its earlier checkpoint or results "
                          f"({'; '.join(changes[:3])}); starting it fresh[/]")
        _empty_run_dir(run_dir)
    remove_temporary_files(run_dir)
    checkpoint = run_dir / run_folder.LAST
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


_LOCK_NAME = ".lock"


def claim(run_dir: Path):
    """A context manager yielding True if this process now holds the run's lock (``run_dir/.lock``).

    The operating system releases the lock when its holder exits or is killed
    (:func:`benchkit.io.file_lock`), so a crashed run never blocks its own resumption.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    return file_lock(run_dir / _LOCK_NAME, wait=False)

