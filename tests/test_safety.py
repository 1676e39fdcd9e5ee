"""Safety: checkpoints load with weights_only, YAML with a safe loader, plugins only from what is named."""

import os
import re
from pathlib import Path

import pytest
import torch

from benchkit.cli import main
from benchkit.config.validation import load_experiment
from benchkit.errors import ConfigError, WeightsError
from benchkit.io import load_torch
from benchkit.models.weights import load_state_dict_file
from conftest import REPO, small_experiment

SOURCE_FOLDERS = ["benchkit", "backbones", "heads"]


class _Payload:
    """Unpickling this runs ``os.system`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _calls(text: str, function: str) -> list[str]:
    """The full text of every ``function(...)`` call in ``text`` (parentheses balanced)."""
    calls = []
    for match in re.finditer(re.escape(function) + r"\(", text):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        calls.append(text[match.start():end + 1])
    return calls


def test_every_checkpoint_load_in_the_code_uses_weights_only():
    offenders, seen = [], 0
    for folder in SOURCE_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            for call in _calls(text, "torch.load") + _calls(text, "load_state_dict_from_url"):
                seen += 1
                if "weights_only=True" not in call:
                    offenders.append(f"{path.relative_to(REPO)}: {call}")
    assert seen >= 2 and not offenders


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, evil)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        load_torch(evil)
    with pytest.raises(WeightsError, match="evil.pt"):
        load_state_dict_file(evil)
    assert not marker.exists()


def test_a_pickled_object_as_weights_stops_the_experiment(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, evil)
    path = small_experiment(tmp_path, models=[{"backbone": {"name": "resnet18", "weights": str(evil)},
                                               "head": "regression"}])
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "evil.pt" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "override"])
def test_python_tags_in_yaml_are_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    path = small_experiment(tmp_path)
    if where == "file":
        path.write_text(path.read_text() + f"description: {tag}\n")
    with pytest.raises(ConfigError, match="python/object"):
        load_experiment(path, [f"description={tag}"] if where == "override" else [])
    assert not marker.exists()


def test_plugins_are_imported_only_when_named(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported"
    for name in ("sneaky.py", "plugins/sneaky2.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"open({str(marker)!r}, 'a').write('{name}\\n')\n")
    monkeypatch.chdir(tmp_path)
    path = small_experiment(tmp_path)
    assert main(["run", str(path), "--dry-run"]) == 0
    assert not marker.exists()
    path = small_experiment(tmp_path, plugins=[*load_experiment(path).plugins, "sneaky.py"])
    assert main(["run", str(path), "--dry-run"]) == 0
    assert marker.read_text() == "sneaky.py\n"
    capsys.readouterr()
