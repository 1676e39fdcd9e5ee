"""benchkit: benchmark deep models against each other on ordinal image-grading tasks."""

from benchkit.registry import register_backbone, register_head

__version__ = "0.1.0"
__all__ = ["register_backbone", "register_head", "__version__"]
