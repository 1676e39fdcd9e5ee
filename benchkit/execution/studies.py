"""Optuna's side of tuning: a study per configuration in a journal file, its sampler, pruner and direction.

The journal (Optuna's ``JournalStorage`` over a ``JournalFileBackend``) is an append-only file that several
processes may write at once, so trials running in workers (``--jobs``, Ray) report to the same study, and a
study read again after an interruption holds every trial told so far.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from benchkit.config.schema import TrialInfo
from benchkit.config.tuning import PrunerConfig, SamplerConfig, TuningConfig
from benchkit.errors import BenchkitError
from benchkit.evaluation.metrics import HIGHER_IS_BETTER


def journal_storage(path: Path):
    """Optuna's journal storage over the file ``path`` (created with its folder)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def direction(tuning: TuningConfig, metric: str) -> str:
    """``minimize`` or ``maximize``: as set, else from the metric (``valid_qwk`` up, ``valid_mae`` down)."""
    if tuning.direction != "auto":
        return tuning.direction
    base = metric[len("valid_"):].split("__")[0]
    return "maximize" if HIGHER_IS_BETTER.get(base, False) else "minimize"


def make_sampler(config: SamplerConfig, trials_so_far: int):
    """The configured sampler, seeded so that the next trial's parameters depend only on the study's history.

    QMC draws the next point of one scrambled Sobol sequence (its position is kept in the study);
    TPE and random are seeded afresh for each trial from the seed and the number of trials so far, so a
    study resumed in a new process draws what the uninterrupted one would have drawn.
    """
    import optuna

    seed = config.seed + 1000003 * trials_so_far
    if config.name == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=config.seed,
                                              independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                              warn_independent_sampling=False)
    if config.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(config: PrunerConfig):
    """The configured pruner reading the per-epoch validation metric (Optuna's NopPruner for ``none``)."""
    import optuna

    if config.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials,
                                           n_warmup_steps=config.warmup_epochs)
    if config.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.min_resource,
                                                      reduction_factor=config.reduction_factor)
    return optuna.pruners.NopPruner()


def open_study(journal: Path, name: str, direction_: str, pruner: PrunerConfig):
    """The study ``name`` in ``journal``, created on first use."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=journal_storage(journal), direction=direction_,
                               pruner=make_pruner(pruner), load_if_exists=True)


def running_trial(info: TrialInfo):
    """The Optuna trial a run in a worker reports its epochs to (for the pruner)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=info.study, storage=journal_storage(info.journal),
                              pruner=make_pruner(info.pruner))
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, info.number)
    return optuna.trial.Trial(study, trial_id)


class TrialPruned(BenchkitError):
    """The pruner stopped a trial after an epoch: its validation metric trails the study's other trials."""


def pruning_reporter(info: TrialInfo | None):
    """An ``on_epoch`` callback reporting a trial's validation metric and raising :class:`TrialPruned`
    when the pruner says so; ``None`` for a run that is no trial or a study without a pruner."""
    if info is None or info.pruner.name == "none":
        return None
    trial = running_trial(info)

    def report(row: dict) -> None:
        value = row.get(info.metric)
        if value is None:
            return
        trial.report(float(value), int(row["epoch"]))
        if trial.should_prune():
            raise TrialPruned(f"pruned after epoch {row['epoch']} ({info.metric} {value:.4g})")
    return report
