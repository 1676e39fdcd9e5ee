"""No module over 350 lines: a module that grows past it holds two jobs and is split (the design rule)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIMIT = 350
MODULES = sorted(p for folder in ("benchkit", "heads", "backbones") for p in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_is_at_most_350_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LIMIT, f"{path.relative_to(REPO)} has {lines} lines: split it by responsibility"
