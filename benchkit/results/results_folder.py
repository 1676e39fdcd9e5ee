"""An experiment's results folder: the one module that names its files, and the one reader of its saved experiment.

::

    <out>/experiment.yaml              the resolved experiment the runs were made with
    <out>/runs/<run_id>/               one folder per run (its files: :mod:`benchkit.results.run_folder`)
    <out>/ensembles/<id>/              the ensembles' predictions and rows (:mod:`benchkit.results.ensembles`)
    <out>/leaderboard.csv, .xlsx       one row per run and ensemble
    <out>/leaderboard_aggregated.csv   across seeds and folds; leaderboard_pivot.csv: a two-key grid
    <out>/plots/, <out>/report.html    experiment plots and the HTML report
    <out>/trials/<study>/              a configuration's tuning: study.journal (Optuna) and trial-NNN/ run folders
    <out>/tuning_trials.csv            every trial of every study; budget_curves.csv: expected best after k trials

Other modules ask this one for a path instead of spelling a file name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchkit.config.schema import EvaluationConfig, ExperimentConfig, dump_yaml
from benchkit.errors import ConfigError
from benchkit.io import write_text

EXPERIMENT = "experiment.yaml"
RUNS = "runs"
ENSEMBLES = "ensembles"
LEADERBOARD = "leaderboard.csv"
WORKBOOK = "leaderboard.xlsx"
SUMMARY_FILES = {"aggregated": "leaderboard_aggregated.csv", "pivot": "leaderboard_pivot.csv",
                 "ranks": "leaderboard_ranks.csv"}
PLOTS = "plots"
REPORT = "report.html"
LEADERBOARD_LOCK = ".leaderboard.lock"
TRIALS = "trials"
STUDY_JOURNAL = "study.journal"
TRIALS_TABLE = "tuning_trials.csv"
BUDGET_CURVES = "budget_curves.csv"


def runs_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / RUNS


def run_dir(out_dir: str | Path, run_id: str) -> Path:
    return Path(out_dir) / RUNS / str(run_id)


def ensemble_dir(out_dir: str | Path, ensemble_id: str) -> Path:
    return Path(out_dir) / ENSEMBLES / str(ensemble_id)


def study_dir(out_dir: str | Path, study: str) -> Path:
    """``<out>/trials/<study>``: one configuration's tuning (its journal and its trials' run folders)."""
    return Path(out_dir) / TRIALS / str(study)


def study_journal(out_dir: str | Path, study: str) -> Path:
    return study_dir(out_dir, study) / STUDY_JOURNAL


def trial_dir(out_dir: str | Path, study: str, number: int) -> Path:
    """The run folder of trial ``number`` of ``study`` (outside ``runs/``: trials are not leaderboard rows)."""
    return study_dir(out_dir, study) / f"trial-{number:03d}"


def trials_table_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / TRIALS_TABLE


def budget_curves_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / BUDGET_CURVES


def leaderboard_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / LEADERBOARD


def workbook_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / WORKBOOK


def summary_path(out_dir: str | Path, view: str) -> Path:
    """The CSV of a summary view (``aggregated`` or ``pivot``)."""
    return Path(out_dir) / SUMMARY_FILES[view]


def plots_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / PLOTS


def report_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / REPORT


def require_results_folder(out_dir: str | Path) -> Path:
    """``out_dir`` if it is a results folder (it has ``runs/``); a ConfigError saying so otherwise."""
    if not runs_dir(out_dir).is_dir():
        raise ConfigError(f"{out_dir}: no {RUNS}/ folder here (is this a benchkit results folder?)")
    return Path(out_dir)


@dataclass(frozen=True)
class SavedExperiment:
    """The experiment a results folder was made with: its text and its parsed content (empty when absent)."""

    text: str | None = None
    content: dict = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        return self.content.get("name")

    @property
    def evaluation(self) -> EvaluationConfig:
        """The ``evaluation`` section, validated (defaults where the file has none)."""
        return EvaluationConfig.model_validate(self.content.get("evaluation") or {})

    @property
    def sort_by(self) -> str:
        return self.evaluation.sort_by


def write_experiment(out_dir: str | Path, config: ExperimentConfig) -> None:
    write_text(Path(out_dir) / EXPERIMENT, experiment_text(config))


def experiment_text(config: ExperimentConfig) -> str:
    """The resolved experiment as ``experiment.yaml`` holds it (also the workbook's ``config`` sheet)."""
    return dump_yaml(config.model_dump(mode="json"))


def read_experiment(out_dir: str | Path) -> SavedExperiment:
    """``experiment.yaml`` of a results folder; empty when the folder has none."""
    path = Path(out_dir) / EXPERIMENT
    if not path.is_file():
        return SavedExperiment()
    text = path.read_text(encoding="utf-8")
    try:
        content = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not readable YAML ({exc})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(content).__name__}")
    return SavedExperiment(text, content)
