"""The README's Python examples run as written."""

import re

from conftest import REPO


def _python_block(heading: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_use_from_python_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_block("Use from Python"), "README.md: Use from Python", "exec"), {})
    printed = capsys.readouterr().out
    assert "resnet18-coral__s1" in printed and "test_mae_mean" in printed and "'level_name'" in printed
    assert (tmp_path / "results" / "python_demo" / "leaderboard.csv").is_file()
