"""The input check before any training: every pending run's data read and its model built.

A bad dataset, weights file, backbone or head stops the experiment with exit status 2 before anything is
trained; the models built here are handed to their runs when the runs execute in this process.
"""

from __future__ import annotations

import json

from benchkit.config.schema import RunSpec
from benchkit.data.prepare import load_dataset, prepare_dataset
from benchkit.errors import BenchkitError, ConfigError
from benchkit.models.grader import BuiltModel, build_for
from benchkit.progress import log_console
from benchkit.training.build_inputs import resolve_build
from benchkit.training.runtime import device_problem


def check_inputs(runs: list[RunSpec], build_models: bool = False) -> tuple[list[RunSpec], dict[str, BuiltModel]]:
    """Read every run's data, resolve its build inputs and build every model (weights included) before any
    training; return the runs with their build inputs resolved and, with ``build_models`` (the runs execute in
    this process), the models built here by run id, to hand to their runs.

    Bad data, weights files, backbone or head names and options are raised together as one
    error (exit status 2). Other exceptions are left to the run, which records them as failed.
    """
    problems: list[BenchkitError] = []
    seen: set[str] = set()
    built: dict[str, BuiltModel] = {}
    notes: set[str] = set()
    resolved = []
    for spec in runs:
        dataset = _check_data(spec, problems, notes)
        if dataset is not None:
            try:
                spec = resolve_build(spec, dataset.classes, dataset.splits["train"].labels)
                key = json.dumps([spec.model.model_dump(mode="json"), spec.build.model_dump(mode="json")])
                if key not in seen:
                    seen.add(key)
                    model = build_for(spec)
                    if build_models:
                        built[spec.run_id] = model
            except BenchkitError as exc:
                problems.append(type(exc)(f"model {spec.model_name!r}: {exc}"))
            except Exception:  # a plugin bug: the run itself fails and records the traceback
                pass
        resolved.append(spec)
    if problems:
        messages = list(dict.fromkeys(str(p) for p in problems))
        raise type(problems[0])(messages[0] if len(messages) == 1 else
                                f"{len(messages)} problems found before training:\n"
                                + "\n".join(f"- {m}" for m in messages))
    return resolved, built


def check_devices(runs: list[RunSpec]) -> None:
    """Every run's ``train.device`` is present on this machine (runs that execute here); a ConfigError naming
    the run and the device otherwise, before any training."""
    for spec in runs:
        problem = device_problem(spec.train.device, "train.device")
        if problem:
            raise ConfigError(f"run {spec.run_id}: {problem}")


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
