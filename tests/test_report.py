"""Report: one self-contained HTML file (inlined PNGs, no external references) with the leaderboard, the
dataset summary, an audit found in the folder, every run's config and the environment; and a headless
Chromium screenshot of it where Chromium is installed."""

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest
import torch
from PIL import Image

from benchkit.cli import main
from conftest import REPO, small_experiment

SCREENSHOT = REPO / "scripts" / "screenshot_report.sh"


class _Refs(HTMLParser):
    """Every src/href/srcset/style url and every tag name in a page."""

    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster"):
                self.refs.append((tag, name, value or ""))


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    path = small_experiment(tmp, models=[
        {"backbone": "tiny_cnn", "head": "regression"},
        {"name": "broken", "backbone": {"name": "tiny_cnn", "options": {"width": -1}}, "head": "regression"}])
    out = tmp / "out"
    main(["run", str(path), "--out", str(out), "--quiet"])
    (out / "data_check.json").write_text(json.dumps({
        "clean": False, "counts": {"train": 48, "valid": 24, "test": 24},
        "findings": [{"kind": "subject_overlap", "count": 2, "message": "2 subjects in two splits"}]}))
    assert main(["report", str(out)]) == 0
    return out, (out / "report.html").read_text(encoding="utf-8")


def test_images_are_inlined_pngs_and_nothing_is_external(reported):
    _, page = reported
    parser = _Refs()
    parser.feed(page)
    images = [value for tag, name, value in parser.refs if tag == "img"]
    assert len(images) >= 6  # experiment leaderboard chart + five plots of the finished run
    for src in images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            assert img.format == "PNG"
    others = [(tag, name, value) for tag, name, value in parser.refs if tag != "img"]
    assert others and all(value.startswith("#") for _, _, value in others)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "url(" not in page and "@import" not in page


def test_report_holds_leaderboard_dataset_audit_configs_and_environment(reported):
    out, page = reported
    board = pd.read_csv(out / "leaderboard.csv").set_index("run_id")
    assert f"{board.loc['tiny_cnn-regression__s0', 'test_mae']:.4f}" in page
    assert "broken__s0" in page and "RuntimeError" in page
    assert "LEVEL_3" in page and "subject_overlap" in page and "2 subjects in two splits" in page
    assert page.count("config.yaml</summary>") == 2 and "tiny_cnn" in page
    assert torch.__version__ in page


def test_report_of_a_folder_without_runs_is_a_usage_error(tmp_path):
    assert main(["report", str(tmp_path)]) == 2


def test_headless_chromium_renders_the_report(reported, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    out, _ = reported
    shot = tmp_path / "report.png"
    subprocess.run([str(SCREENSHOT), str(out / "report.html"), str(shot), "1400x2400"], check=True, timeout=120)
    with Image.open(shot) as img:
        assert img.size == (1400, 2400)
        levels = img.convert("L").histogram()
        assert sum(1 for n in levels if n) > 50  # text, tables and plots were drawn, not a blank page
