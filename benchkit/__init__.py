"""benchkit: benchmark deep models against each other on ordinal image-grading tasks."""

from benchkit import _checkout  # noqa: F401  (first: lets a source checkout import benchkit.heads/backbones)
from benchkit.registry import register_backbone, register_head

__version__ = "0.1.0"
__all__ = ["load_run", "register_backbone", "register_head", "__version__"]


def __getattr__(name: str):
    """``benchkit.load_run`` is imported on first use (it pulls in torch and the model code)."""
    if name == "load_run":
        from benchkit.predict import load_run
        return load_run
    raise AttributeError(f"module 'benchkit' has no attribute {name!r}")
