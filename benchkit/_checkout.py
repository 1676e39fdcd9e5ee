"""Source-checkout imports of the first-party plugins, which a wheel maps under ``benchkit/``."""

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path


class _CheckoutPlugins(importlib.abc.MetaPathFinder):
    """Finds ``benchkit.backbones`` / ``benchkit.heads`` in a source checkout, where they sit beside ``benchkit/``.

    An installed wheel maps them under ``benchkit/`` (pyproject ``package-dir``). Python started in the checkout
    (``python -m benchkit``, test subprocesses, Ray workers) imports ``benchkit`` from the source folder instead,
    so this finder points the two names at the checkout's folders: the same files the wheel would contain.
    It goes first on ``sys.meta_path``: an editable install of another checkout (``pip install -e``) maps the
    same names to its own folders, and the plugins must come from the checkout ``benchkit`` was imported from.
    """

    NAMES = ("benchkit.backbones", "benchkit.heads")

    def __init__(self, checkout: Path):
        self.checkout = str(checkout)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.NAMES:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.checkout])


HERE = Path(__file__).resolve().parent
if not (HERE / "heads").is_dir() and (HERE.parent / "heads" / "__init__.py").is_file():
    sys.meta_path.insert(0, _CheckoutPlugins(HERE.parent))  # before an editable install's finder of another checkout
