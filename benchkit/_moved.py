"""Module paths that moved: importing an old path still works, with a ``DeprecationWarning`` naming the new one.

Plugin files and scripts written against benchkit 0.1 import ``benchkit.backbone``, ``benchkit.head``,
``benchkit.metrics``, ... (before the domain folders), or ``benchkit.experiment``, ``benchkit.predict``, ...
(before the execution, inference, configuration and command-line folders). Each old path is an alias of the
module that now holds its code (the same module object, so its names and state are shared). The public names
that do not move are ``from benchkit import ...`` (``benchkit.__all__``); the old paths go away in 0.4.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    # 0.1.0: one flat package
    "benchkit.backbone": "benchkit.models.backbone",
    "benchkit.head": "benchkit.models.head",
    "benchkit.model": "benchkit.models.grader",
    "benchkit.freezing": "benchkit.models.freezing",
    "benchkit.weights": "benchkit.models.weights",
    "benchkit.datasets": "benchkit.data.datasets",
    "benchkit.synthetic": "benchkit.data.synthetic",
    "benchkit.splits": "benchkit.data.splits",
    "benchkit.audit": "benchkit.data.audit",
    "benchkit.fetch": "benchkit.data.fetch",
    "benchkit.imagecache": "benchkit.data.image_cache",
    "benchkit.engine": "benchkit.training.engine",
    "benchkit.transforms": "benchkit.training.transforms",
    "benchkit.featurecache": "benchkit.training.feature_cache",
    "benchkit.metrics": "benchkit.evaluation.metrics",
    "benchkit.significance": "benchkit.evaluation.significance",
    "benchkit.leaderboard": "benchkit.results.leaderboard",
    "benchkit.aggregate": "benchkit.results.aggregate",
    "benchkit.plots": "benchkit.results.plots",
    "benchkit.report": "benchkit.results.report",
    "benchkit.tracking": "benchkit.results.tracking",
    # 0.1.x: the top-level modules grouped into folders
    "benchkit.config_files": "benchkit.config.files",
    "benchkit.config_validation": "benchkit.config.validation",
    "benchkit.expansion": "benchkit.config.expansion",
    "benchkit.cli_data": "benchkit.cli.data",
    "benchkit.cachedir": "benchkit.cli.cache",
    "benchkit.experiment": "benchkit.execution.experiment",
    "benchkit.executors": "benchkit.execution.executors",
    "benchkit.runner": "benchkit.execution.runner",
    "benchkit.predict": "benchkit.inference.predict",
    "benchkit.export": "benchkit.inference.export",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of :data:`MOVED` and loads each as the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        old, new = module.__name__, MOVED[module.__name__]
        warnings.warn(f"{old} is deprecated and will be removed in benchkit 0.4; import {new} instead "
                      f"(or the public names: from benchkit import ...)", DeprecationWarning,
                      stacklevel=2)  # warnings skips the import system's frames
        sys.modules[old] = importlib.import_module(new)  # the import system returns what sys.modules holds


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
