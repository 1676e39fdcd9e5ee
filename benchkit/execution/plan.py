"""An experiment's plan: the file read and validated, expanded into runs, and what ``--dry-run`` shows.

:func:`plan` is where every entry point starts (``benchkit run``, :func:`benchkit.run`): plugins imported,
runs expanded, test-time views and ensembles checked, so a mistake stops before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from rich.table import Table

from benchkit.config.expansion import expand_runs
from benchkit.config.schema import ExperimentConfig, RunSpec
from benchkit.config.validation import load_experiment
from benchkit.data.prepare import prepare_dataset
from benchkit.errors import ConfigError, DataError
from benchkit.execution.search_space import check_space
from benchkit.models.freezing import parameter_counts
from benchkit.models.grader import model_for
from benchkit.progress import log_console
from benchkit.registry import import_plugins
from benchkit.results.aggregate import config_columns, config_labels
from benchkit.results.ensembles import EnsemblePlan, plan_ensembles
from benchkit.results.run_folder import base_row
from benchkit.training.build_inputs import resolve_build
from benchkit.training.runtime import device_problem
from benchkit.training.transforms import build_augmentation
from benchkit.training.tta import build_views, tta_label


def plan(source: str | Path | Mapping, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, list[RunSpec]]:
    """Load and validate an experiment (a file, or a mapping whose relative paths are taken from the
    current folder) and expand it into runs (plugins imported first)."""
    config = load_experiment(source, overrides)
    folder = Path.cwd() if isinstance(source, Mapping) else Path(source).parent
    import_plugins(config.plugins, folder)
    try:
        runs = expand_runs(config, base_dir=folder.resolve())
        _check_recipes(runs)
        build_views(config.evaluation.tta)
        planned_ensembles(config, runs)
        check_space(config, runs)
    except ConfigError as exc:
        raise ConfigError(f"{source if not isinstance(source, Mapping) else '<experiment>'}: {exc}") from None
    return config, runs


def _check_recipes(runs: list[RunSpec]) -> None:
    """What each distinct recipe names beyond the schema: its kornia transforms and the device's spelling."""
    seen: set[str] = set()
    for spec in runs:
        key = json.dumps([spec.train.augmentation, spec.train.device])
        if key in seen:
            continue
        seen.add(key)
        problem = device_problem(spec.train.device, "train.device", present=False)
        if problem:
            raise ConfigError(f"model {spec.model_name!r}: {problem}")
        if isinstance(spec.train.augmentation, list):
            try:
                build_augmentation(spec.train.augmentation, size=spec.data.image_size or 224)
            except ConfigError as exc:
                raise ConfigError(f"model {spec.model_name!r}: {exc}") from None


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
    problem = run_count_problem(config, runs)
    if problem:
        lines.append(f"[yellow]note:[/] {problem}")
    for plan in planned_ensembles(config, runs):
        lines.append(f"ensemble {plan.run_id}: mean of {len(plan.members)} run(s): "
                     + ", ".join(plan.members["run_id"]))
    return lines


def run_count_problem(config: ExperimentConfig, runs: list[RunSpec]) -> str | None:
    """Why the experiment should not start without a word: more runs than ``max_runs``; None otherwise."""
    if len(runs) <= config.max_runs:
        return None
    return (f"the experiment expands into {len(runs):,} runs, more than max_runs ({config.max_runs:,}); check the "
            f"grid and seeds with --dry-run, then pass --yes (Python: yes=True) or set max_runs: {len(runs)} in "
            f"the experiment")


def confirm_run_count(config: ExperimentConfig, runs: list[RunSpec], yes: bool) -> None:
    """A ConfigError, before anything is written, when the experiment has more than ``max_runs`` runs and
    ``yes`` was not given."""
    problem = run_count_problem(config, runs)
    if problem and not yes:
        raise ConfigError(problem)


def default_out_dir(config: ExperimentConfig) -> Path:
    return config.output_dir or Path("results") / config.name


DRY_RUN_ROWS = 100
"""Runs ``--dry-run`` lists one per row; beyond them the table says how many more there are."""


def dry_run(runs: list[RunSpec], rows: int = DRY_RUN_ROWS) -> Table:
    """Build every model (architecture only, no weights) and tabulate parameter counts, one row per run for
    the first ``rows`` runs, then one row saying how many more (a big grid is listed in seconds).

    The class count comes from the data where it can be read, else from ``data.classes``.
    """
    models = len({json.dumps(spec.model.model_dump(mode="json")) for spec in runs})
    table = Table(title=f"{len(runs):,} run(s), {models} distinct model(s)", header_style="bold cyan")
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
        if len(table.rows) < rows:
            table.add_row(spec.run_id, spec.model.backbone.name, spec.model.head.name, str(spec.seed),
                          f"{counts['total']:,}", f"{counts['trainable']:,}", weights)
    if len(runs) > rows:
        table.add_row(f"... and {len(runs) - rows:,} more run(s)", "", "", "", "", "", "")
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
