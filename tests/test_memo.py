"""benchkit.memo: every process-wide cache is a named, bounded Memo that clear_memos() empties."""

import ast
from pathlib import Path

import pytest

from benchkit.memo import MEMOS, Memo, clear_memos, memo_sizes, memoized

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for top in ("benchkit", "heads", "backbones") for p in (REPO / top).rglob("*.py"))


def test_least_recently_used_entry_goes_first():
    memo = Memo("test-lru", maxsize=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a", lambda: 0) == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert memo.peek("b") is None and memo.peek("a") == 1 and memo.peek("c") == 3
    assert len(memo) == 2


def test_memoized_computes_once_per_arguments():
    calls = []

    @memoized("test-square", maxsize=8)
    def square(x, *, offset=0):
        calls.append(x)
        return x * x + offset

    assert square(3) == 9 and square(3) == 9 and square(3, offset=1) == 10
    assert calls == [3, 3]
    square.memo.clear()
    assert square(3) == 9 and calls == [3, 3, 3]


def test_clear_memos_empties_every_cache_of_the_package():
    import benchkit.data.image_cache, benchkit.data.image_hashes, benchkit.data.prepare  # noqa: E401,F401
    import benchkit.models.grader, benchkit.results.paired_tests, benchkit.results.run_folder  # noqa: E401,F401
    import benchkit.training.feature_cache  # noqa: F401
    expected = {"features", "run-files", "paired-tests", "image-facts", "datasets", "prepared-datasets",
                "decoded-splits", "content-hashes", "input-sizes"}
    assert expected <= set(MEMOS)
    for name in expected:
        MEMOS[name].put("probe", 1)
    clear_memos()
    assert all(memo_sizes()[name][0] == 0 for name in expected)
    assert all(maxsize > 0 for _, maxsize in memo_sizes().values())


def _module_level_caches(path: Path) -> list[str]:
    """Module-level dict/OrderedDict assignments and functools caches: the idioms benchkit.memo replaces."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                text = ast.unparse(deco)
                if "lru_cache" in text or text.endswith("cache"):
                    found.append(f"{path.name}:{node.lineno} @{text}")
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id.startswith("_") and value is not None:
            if isinstance(value, ast.Dict) and not value.keys or (
                    isinstance(value, ast.Call) and ast.unparse(value.func) in ("OrderedDict", "dict")
                    and not value.args and not value.keywords):
                found.append(f"{path.name}:{node.lineno} {target.id}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_cache_outside_the_memo_idiom(path):
    assert _module_level_caches(path) == []


def test_the_cache_finder_sees_the_old_idioms(tmp_path):
    source = tmp_path / "old.py"
    source.write_text("from functools import lru_cache\n_SEEN: dict = {}\n_MORE = OrderedDict()\n"
                      "@lru_cache(maxsize=4)\ndef f(x):\n    return x\n_TABLE = dict(width=3)\n")
    assert len(_module_level_caches(source)) == 3
