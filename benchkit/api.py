"""The Python API: run an experiment from a script or notebook and read its results as DataFrames.

>>> import benchkit
>>> results = benchkit.run("experiments/quickstart.yaml", out="results/quickstart")  # doctest: +SKIP
>>> results = benchkit.load_results("results/quickstart")                            # doctest: +SKIP
>>> results.leaderboard[["run_id", "test_mae", "test_qwk"]]                          # doctest: +SKIP

``run`` does what ``benchkit run`` does (same validation, executors, resumption and output folder)
and raises :class:`benchkit.errors.BenchkitError` where the command would exit with status 2.
"""

from __future__ import annotations

import difflib
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from benchkit.config.validation import override_list
from benchkit.errors import ConfigError, path_argument
from benchkit.results import results_folder, run_folder
from benchkit.results.ensembles import predictions_path

if TYPE_CHECKING:
    from benchkit.execution.executors import Executor
    from benchkit.inference.predict import LoadedRun


def run(experiment: str | Path | Mapping, out: str | Path | None = None, overrides: str | Sequence[str] = (), *,
        executor: "str | Executor" = "local", jobs: int = 1, ray_address: str | None = None,
        fresh: bool = False, quiet: bool = False, yes: bool = False) -> "Results":
    """Run an experiment and return its :class:`Results`.

    ``experiment`` is a YAML file, or a mapping with the same keys (its relative paths, plugin files and
    ``base:`` files are taken from the current folder). ``out`` defaults to ``results/<name>``;
    ``overrides`` are ``KEY=VALUE`` strings as for ``--set`` (one string is one override); ``executor`` is
    ``"local"`` (``jobs`` processes) or ``"ray"`` (or an :class:`~benchkit.execution.executors.Executor`). As
    on the command line, finished runs in ``out`` are kept and interrupted ones resumed unless ``fresh``, and
    an experiment of more runs than its ``max_runs`` starts only with ``yes=True``. A wrong argument is a
    ConfigError naming it, raised before anything is written.
    """
    from benchkit.execution.executors import Executor, make_executor
    from benchkit.execution.experiment import run_experiment
    from benchkit.execution.plan import confirm_run_count, default_out_dir, plan
    started = time.time()
    out_dir = path_argument(out, "out", "a results folder") if out is not None else None
    _check_options(executor=executor, jobs=jobs, ray_address=ray_address, fresh=fresh, quiet=quiet, yes=yes)
    config, runs = plan(experiment, override_list(overrides))
    confirm_run_count(config, runs, yes)
    out_dir = out_dir if out_dir is not None else default_out_dir(config)
    chosen = executor if isinstance(executor, Executor) else make_executor(executor, jobs, ray_address)
    run_experiment(config, runs, out_dir, quiet=quiet, fresh=fresh, executor=chosen, started=started)
    return Results(out_dir)


def load_results(out_dir: str | Path) -> "Results":
    """The results folder of an experiment (what ``benchkit run --out DIR`` wrote)."""
    return Results(results_folder.require_results_folder(path_argument(out_dir, "out_dir", "a results folder")))


def _check_options(**options) -> None:
    """The keyword arguments of :func:`run`, each of its type, or a ConfigError naming it."""
    from benchkit.execution.executors import Executor
    if not isinstance(options["executor"], (str, Executor)):
        raise ConfigError(f"executor: expected 'local', 'ray' or an Executor, got {options['executor']!r}")
    jobs = options["jobs"]
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: expected a whole number of processes, at least 1, got {jobs!r}")
    if options["ray_address"] is not None and not isinstance(options["ray_address"], str):
        raise ConfigError(f"ray_address: expected a str such as 'auto' or 'ray://head:10001', "
                          f"got {options['ray_address']!r}")
    for name in ("fresh", "quiet", "yes"):
        if not isinstance(options[name], (bool, np.bool_)):
            raise ConfigError(f"{name}: expected True or False, got {options[name]!r}")


class Results:
    """An experiment's results folder as DataFrames. Tables are read once, on first use."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = path_argument(out_dir, "out_dir", "a results folder")

    def __repr__(self) -> str:
        return f"Results({str(self.out_dir)!r}: {len(self.run_ids)} run(s))"

    @property
    def run_ids(self) -> list[str]:
        """Runs with a result (finished or failed), in leaderboard order."""
        return [str(r) for r in self.leaderboard["run_id"]] if "run_id" in self.leaderboard else []

    @cached_property
    def leaderboard(self) -> pd.DataFrame:
        """One row per run, best first (``leaderboard.csv``; rebuilt from the run folders when absent)."""
        path = results_folder.leaderboard_path(self.out_dir)
        if path.is_file():
            try:
                return pd.read_csv(path)
            except pd.errors.EmptyDataError:  # written before any run finished
                return pd.DataFrame()
        from benchkit.results.leaderboard import build_leaderboard
        return build_leaderboard(self.out_dir, self._evaluation().sort_by)

    @cached_property
    def aggregated(self) -> pd.DataFrame:
        """One row per configuration across seeds and folds: mean, std and 95% t-interval of each metric
        (``leaderboard_aggregated.csv``, with the paired tests when a reference is set)."""
        path = results_folder.summary_path(self.out_dir, "aggregated")
        if path.is_file():
            return pd.read_csv(path)
        from benchkit.results.aggregate import aggregate_runs, sort_aggregated
        aggregated = aggregate_runs(self.leaderboard)
        return sort_aggregated(aggregated, self._evaluation().sort_by) if not aggregated.empty else aggregated

    @cached_property
    def history(self) -> pd.DataFrame:
        """Every run's per-epoch history in one long table: ``run_id, epoch, train_loss, valid_...``."""
        return self._concat(lambda row: run_folder.read_history(results_folder.run_dir(self.out_dir, row["run_id"])))

    def predictions(self, split: str = "test") -> pd.DataFrame:
        """Every run's predictions on ``split`` in one long table: ``run_id, image, target, pred, score,
        probabilities`` (levels 0-based; ``probabilities`` a list of K floats, or None for heads without)."""
        if split not in ("valid", "test"):
            raise ConfigError(f"split: expected 'valid' or 'test', got {split!r}")
        frame = self._concat(lambda row: run_folder.read_table(predictions_path(self.out_dir, row, split)))
        if frame.empty:
            return pd.DataFrame(columns=["run_id", "image", "target", "pred", "score", "probabilities"])
        prob_columns = sorted((c for c in frame if c.startswith("prob_")), key=lambda c: int(c[5:]))
        probs = frame[prob_columns].to_numpy(dtype=float)  # (N, 0) for heads without probabilities
        frame = frame.drop(columns=prob_columns)
        frame["probabilities"] = [None if not len(row) or np.isnan(row).any() else row.tolist() for row in probs]
        return frame

    def run(self, run_id: str, device: str | None = None) -> "LoadedRun":
        """One finished run, loaded for prediction (see :func:`benchkit.load_run`)."""
        from benchkit.inference.predict import load_run
        if not isinstance(run_id, str) or not run_id:
            raise ConfigError(f"run_id: expected a run id such as {(self.run_ids or ['<run_id>'])[0]!r}, "
                              f"got {run_id!r}")
        run_dir = results_folder.run_dir(self.out_dir, run_id)
        if not run_dir.is_dir():
            if run_id in self.run_ids:
                raise ConfigError(f"{self.out_dir}: {run_id!r} is an ensemble, with no model of its own to load "
                                  "(load one of its member_runs)")
            close = difflib.get_close_matches(run_id, self.run_ids, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (runs: {', '.join(self.run_ids[:5])}...)"
            raise ConfigError(f"{self.out_dir}: no run {run_id!r}{hint}")
        return load_run(run_dir, device=device)

    def _concat(self, read) -> pd.DataFrame:
        """``read(row)`` of every leaderboard row (runs and ensembles) that has the table, with its ``run_id``."""
        frames = []
        for _, row in self.leaderboard.iterrows():
            frame = read(row)
            if frame is not None:
                frame.insert(0, "run_id", str(row["run_id"]))
                frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _evaluation(self):
        return results_folder.read_experiment(self.out_dir).evaluation
