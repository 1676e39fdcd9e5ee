"""benchkit: benchmark deep models against each other on ordinal image-grading tasks.

From Python: :func:`run` an experiment (a YAML file or a mapping), :func:`load_results` of a results
folder, :func:`load_run` a finished run to predict with. They are imported on first use (they pull in
torch and the model code), so ``import benchkit`` stays light.
"""

from typing import TYPE_CHECKING

from benchkit import _checkout  # noqa: F401  (first: lets a source checkout import benchkit.heads/backbones)
from benchkit.registry import register_backbone, register_head

if TYPE_CHECKING:
    from benchkit.api import Results, load_results, run
    from benchkit.predict import LoadedRun, load_run

__version__ = "0.1.0"
__all__ = ["LoadedRun", "Results", "load_results", "load_run", "register_backbone", "register_head", "run",
           "__version__"]

_LAZY = {"run": "benchkit.api", "load_results": "benchkit.api", "Results": "benchkit.api",
         "load_run": "benchkit.predict", "LoadedRun": "benchkit.predict"}


def __getattr__(name: str):
    """The public API above, imported on first use."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'benchkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
