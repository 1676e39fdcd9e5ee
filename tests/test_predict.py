"""Predict: a run trained here, reloaded from its folder, gives the predictions its CSV holds for the same
images written to PNG files (lossless), from the command line and from ``benchkit.load_run``."""

import json

import pandas as pd
import pytest
import yaml
from PIL import Image

import benchkit
from benchkit.cli import main
from benchkit.config import RunSpec
from benchkit.runner import prepare_dataset
from conftest import small_experiment

MODELS = [{"backbone": "tiny_cnn", "head": "regression"}, {"backbone": "tiny_cnn", "head": "softmax"}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    path = small_experiment(tmp, models=MODELS)
    out = tmp / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    run_dir = out / "runs" / "tiny_cnn-regression__s0"
    spec = RunSpec.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    split = prepare_dataset(spec).splits["test"]
    images = tmp / "images"
    images.mkdir()
    paths = []
    for i, image_id in enumerate(split.ids):
        paths.append(images / image_id.replace("/", "_"))
        split.load_image(i).save(paths[-1], format="PNG")
    return out, paths


def _expected(run_dir) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "predictions_test.csv")
    frame["file"] = frame.image.str.replace("/", "_")
    return frame.set_index("file")


@pytest.mark.parametrize("run_id", ["tiny_cnn-regression__s0", "tiny_cnn-softmax__s0"])
def test_cli_predictions_equal_the_runs_csv(trained, run_id, capsys):
    out, paths = trained
    run_dir = out / "runs" / run_id
    capsys.readouterr()
    assert main(["predict", "--run", str(run_dir), *map(str, paths), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = _expected(run_dir)
    assert len(results) == len(expected) == 24
    classes = [f"LEVEL_{k}" for k in range(4)]
    for item in results:
        row = expected.loc[item["image"].rsplit("/", 1)[-1]]
        assert item["level"] == row.pred and item["level_name"] == classes[row.pred]
        assert item["score"] == pytest.approx(row.score, abs=1e-5)
        if "prob_0" in row:
            assert list(item["probabilities"]) == classes
            assert list(item["probabilities"].values()) == pytest.approx(
                [row[f"prob_{k}"] for k in range(4)], abs=1e-5)
        else:
            assert "probabilities" not in item


def test_python_api_predicts_pil_images_like_the_cli(trained):
    out, paths = trained
    run = benchkit.load_run(out / "runs" / "tiny_cnn-softmax__s0", device="cpu")
    assert run.classes == [f"LEVEL_{k}" for k in range(4)] and run.input_size == 32 and run.has_probabilities
    expected = _expected(out / "runs" / "tiny_cnn-softmax__s0")
    images = [Image.open(p).convert("RGB") for p in paths[:5]]
    results = run.predict(images)
    assert [r["level"] for r in results] == [expected.loc[p.name].pred for p in paths[:5]]
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    bigger = run.predict([images[0].resize((64, 64), Image.BILINEAR)])[0]  # resized to the run's input size
    assert set(bigger) == {"level", "level_name", "score", "probabilities"}
    by_hand = run.predict([images[0].resize((64, 64), Image.BILINEAR).resize((32, 32), Image.BILINEAR)])[0]
    assert bigger["level"] == by_hand["level"] and bigger["score"] == pytest.approx(by_hand["score"], abs=1e-6)
    assert list(bigger["probabilities"].values()) == pytest.approx(list(by_hand["probabilities"].values()), abs=1e-6)


def test_table_output_names_each_image(trained, capsys):
    out, paths = trained
    capsys.readouterr()
    assert main(["predict", "--run", str(out / "runs" / "tiny_cnn-regression__s0"), str(paths[0])]) == 0
    text = capsys.readouterr().out
    assert paths[0].name[:20] in text and "LEVEL_" in text


def test_missing_checkpoint_or_image_are_usage_errors(trained, tmp_path):
    out, paths = trained
    assert main(["predict", "--run", str(tmp_path), str(paths[0])]) == 2
    assert main(["predict", "--run", str(out / "runs" / "tiny_cnn-regression__s0"), str(tmp_path / "no.png")]) == 2
