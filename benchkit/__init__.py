"""benchkit: benchmark deep models against each other on ordinal image-grading tasks.

The public names below are the ones plugin files and scripts import; they do not move between releases
(``benchkit.__all__``, pinned by a test). Everything else is internal and may move, with the old path kept
for two releases (see ``CHANGELOG.md``).

- run an experiment and read its results: :func:`run`, :func:`load_results` (:class:`Results`);
- predict with a finished run: :func:`load_run` (:class:`LoadedRun`);
- extend benchkit: :class:`Backbone` with :func:`register_backbone`, :class:`Head` (returning
  :class:`Prediction`) with :func:`register_head`, a dataset format with :func:`register_dataset_format`;
- the errors a user's mistake raises: :class:`ConfigError`, :class:`DataError`.

Names that need torch are imported on first use, so ``import benchkit`` stays light.
"""

from typing import TYPE_CHECKING

from benchkit import _checkout  # noqa: F401  (first: lets a source checkout import benchkit.heads/backbones)
from benchkit import _moved
from benchkit._version import __version__
from benchkit.errors import ConfigError, DataError
from benchkit.registry import register_backbone, register_dataset_format, register_head

if TYPE_CHECKING:
    from benchkit.api import Results, load_results, run
    from benchkit.inference.predict import LoadedRun, load_run
    from benchkit.models.backbone import Backbone
    from benchkit.models.head import Head, Prediction

__all__ = ["Backbone", "ConfigError", "DataError", "Head", "LoadedRun", "Prediction", "Results", "__version__",
           "load_results", "load_run", "register_backbone", "register_dataset_format", "register_head", "run"]

_LAZY = {"run": "benchkit.api", "load_results": "benchkit.api", "Results": "benchkit.api",
         "load_run": "benchkit.inference.predict", "LoadedRun": "benchkit.inference.predict",
         "Backbone": "benchkit.models.backbone", "Head": "benchkit.models.head", "Prediction": "benchkit.models.head"}

_moved.install()


def __getattr__(name: str):
    """The public names above that need torch, imported on first use."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'benchkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
