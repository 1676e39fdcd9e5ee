"""An experiment: check the unfinished runs' inputs, run them through an executor, refresh the leaderboard.

The plan (:mod:`~benchkit.execution.plan`) comes first; before any training every pending run's data is read
and its model built (:mod:`~benchkit.execution.input_checks`); each run is claimed just before it is handed to
the executor (:mod:`~benchkit.execution.claims`); after each run the leaderboard files are rebuilt
(:mod:`benchkit.results.rebuild`), and a rebuild that fails there is warned about once and does not stop the runs
still to come (the rebuild at the end raises). With ``tuning:`` every configuration's trials run first
(:mod:`~benchkit.execution.tuning`) and the runs take its best parameters. Re-running the same command
skips finished runs and trials and resumes interrupted ones; a finished run that a tracker did not fully receive
is sent to it from its files, without training. The grid ends with one warning naming the runs a tracker still
lacks (:func:`benchkit.results.tracking.tracking_warning`).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchkit.config.schema import ExperimentConfig, RunSpec
from benchkit.errors import OutputError
from benchkit.execution.claims import (claim, complete_tracking_of, empty_run_dir, finished, finished_since,
                                       prepare_resume, refuse_changed_runs)
from benchkit.execution.executors import Executor, LocalExecutor, RunTask
from benchkit.execution.input_checks import check_devices, check_inputs
from benchkit.execution.tuning import tune
from benchkit.io import folder_write_problem
from benchkit.progress import RunsInFlight, console, log_console
from benchkit.results import results_folder
from benchkit.results.aggregate import aggregated_table
from benchkit.results.leaderboard import rich_table
from benchkit.results.plots import try_plots, write_experiment_plots
from benchkit.results.rebuild import rebuild_leaderboard
from benchkit.results.run_folder import run_dir_of
from benchkit.results.tracking import tracking_warning


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
    executor = executor or LocalExecutor()
    if isinstance(executor, LocalExecutor):
        check_devices(runs)
    trials: list[RunSpec] = []
    given_up: set[str] = set()  # trackers that did not answer a finished run's logging: not asked again now
    if config.tuning is not None:
        runs, trials = tune(config, runs, out_dir, executor, quiet=quiet, given_up=given_up)
    pending = [spec for spec in runs if fresh or not finished(spec, run_dir_of(out_dir, spec.run_id))]
    if refuse_changed and not fresh:
        refuse_changed_runs(pending, out_dir)
    checked, built = check_inputs(pending, build_models=not executor.in_workers)
    resolved = {spec.run_id: spec for spec in checked}
    out_dir.mkdir(parents=True, exist_ok=True)
    results_folder.write_experiment(out_dir, config)
    claims: dict[str, ExitStack] = {}
    started = time.time() if started is None else started

    def claimed_tasks():
        for i, spec in enumerate(runs, start=1):
            run_dir = run_dir_of(out_dir, spec.run_id)
            if not fresh and finished(spec, run_dir):
                note = complete_tracking_of(spec, run_dir, out_dir, given_up)
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: finished earlier, skipped{note}")
                continue
            held = claims[spec.run_id] = ExitStack()
            if not held.enter_context(claim(run_dir)):
                claims.pop(spec.run_id).close()
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: running in another process, skipped")
                continue
            if fresh and not finished_since(spec, run_dir, started):
                empty_run_dir(run_dir)
            elif finished(spec, run_dir):  # by another process since this one looked
                claims.pop(spec.run_id).close()
                log_console.print(f"[{i}/{len(runs)}] {spec.run_id}: finished by another process, skipped")
                continue
            resume = prepare_resume(spec, run_dir)
            log_console.print(f"[{i}/{len(runs)}] {spec.run_id}" + (" (resuming)" if resume else ""))
            yield RunTask(resolved.get(spec.run_id, spec), out_dir.resolve(), resume=resume, quiet=quiet,
                          built=built.pop(spec.run_id, None))

    def again(task: RunTask) -> RunTask:
        """A run whose machine was lost: resumed from the checkpoint that machine left, if any."""
        return replace(task, resume=prepare_resume(task.spec, run_dir_of(out_dir, task.spec.run_id)))

    refresh_warned = False

    def ended(task: RunTask, row: dict) -> None:
        nonlocal refresh_warned
        claims.pop(task.spec.run_id).close()
        if row["status"] != "ok":
            log_console.print(f"[red]run {task.spec.run_id} failed:[/] {row['error']}")
        try:
            refresh_leaderboard(config, out_dir)
        except Exception as exc:  # the grid's progress view: the runs still to come matter more
            if not refresh_warned:
                log_console.print(f"[yellow]warning:[/] the leaderboard could not be refreshed after "
                                  f"{task.spec.run_id} ({type(exc).__name__}: {exc}); the runs go on, and it is "
                                  "built again when they end", soft_wrap=True, markup=True, highlight=False)
            refresh_warned = True

    try:
        executor.run(claimed_tasks(), ended, display=RunsInFlight(out_dir, total=len(pending), quiet=quiet),
                     again=again)
    finally:
        built.clear()  # models of runs that executed elsewhere or were skipped
        for held in claims.values():
            held.close()
    try:
        frame, sheets = refresh_leaderboard(config, out_dir)
    except Exception:
        log_console.print(f"[red]the runs have ended and their files are in {results_folder.runs_dir(out_dir)}, "
                          f"but the leaderboard could not be built (below); once that is mended, `benchkit "
                          f"leaderboard {out_dir}` builds it without training[/]", soft_wrap=True, markup=True,
                          highlight=False)
        raise
    if config.evaluation.plots:
        try_plots(write_experiment_plots, out_dir, frame, config.evaluation.sort_by)
    console.print(rich_table(frame, f"{config.name}: leaderboard ({out_dir})"))
    if "aggregated" in sheets:
        console.print(aggregated_table(sheets["aggregated"], f"{config.name}: across seeds and folds"))
    warning = tracking_warning(trials + runs, out_dir)
    if warning:
        log_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, markup=True, highlight=False)
    return frame


def refresh_leaderboard(config: ExperimentConfig, out_dir: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Rebuild the leaderboard files from the run folders: the leaderboard and its extra sheets."""
    return rebuild_leaderboard(out_dir, config.evaluation, results_folder.experiment_text(config))
