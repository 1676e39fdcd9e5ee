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
from benchkit.data.prepare import prepare_dataset
from conftest import small_experiment
from previous_layout import write_previous_layout

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
    assert set(bigger) == {"level", "level_name", "score", "tta", "probabilities"} and bigger["tta"] == "none"
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


class _Payload:
    """Pickled into a checkpoint: creates ``marker`` when unpickled (if anything were to unpickle it)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _run_copy(trained, tmp_path, best=None):
    """A copy of a finished run folder whose weights file is replaced by ``best(path)`` when given: ``best.pt`` of
    the previous layout where ``best`` names it in ``LEGACY``, else ``best.safetensors``."""
    import shutil
    out, _ = trained
    run_dir = tmp_path / "run"
    shutil.copytree(out / "runs" / "tiny_cnn-regression__s0", run_dir)
    if best in LEGACY:
        write_previous_layout(run_dir)
        best(run_dir / "best.pt")
    elif best is not None:
        best(run_dir / "best.safetensors")
    return run_dir


def _evil(path):
    import torch
    torch.save({"model": {}, "classes": ["a"], "extra": _Payload(path.parent / "pwned")}, path)


def _state_dict_only(path):
    import torch
    torch.save(torch.load(path, weights_only=True)["model"], path)


def _empty_folder(tmp):
    (tmp / "no_images").mkdir(exist_ok=True)
    (tmp / "no_images" / "notes.txt").write_text("not an image")
    return tmp / "no_images"


def _not_a_checkpoint(path):
    path.write_text("not a checkpoint\n")


def _cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


LEGACY = (_evil, _not_a_checkpoint, _state_dict_only)

PREDICT_REJECTED = [  # (weights replacement or None, the image arguments, words the one-line message holds)
    (None, lambda images, tmp: [str(_empty_folder(tmp))], [": a folder without image files"]),
    (_evil, lambda images, tmp: [str(images / "0.png")],
     ["best.pt", "refused: it holds a Python object", "weights_only=True"]),
    (_not_a_checkpoint, lambda images, tmp: [str(images / "0.png")],
     ["cannot read checkpoint file", "best.pt", "not a PyTorch file"]),
    (_state_dict_only, lambda images, tmp: [str(images / "0.png")],
     ["best.pt", "not a checkpoint written by benchkit run"]),
    (_cut_in_half, lambda images, tmp: [str(images / "0.png")],
     ["cannot read weights file", "best.safetensors", "not a safetensors file, or a damaged one"]),
]


@pytest.mark.parametrize("best, arguments, words", PREDICT_REJECTED,
                         ids=["folder_without_images", "unsafe_checkpoint", "checkpoint_not_a_torch_file",
                              "checkpoint_a_bare_state_dict", "weights_cut_in_half"])
def test_bad_predict_arguments_are_one_line_exit_2(trained, tmp_path, capsys, best, arguments, words):
    _, paths = trained
    images = tmp_path / "images"
    images.mkdir()
    Image.open(paths[0]).save(images / "0.png")
    run_dir = _run_copy(trained, tmp_path, best)
    before = sorted(p.name for p in run_dir.iterdir())
    capsys.readouterr()
    assert main(["predict", "--run", str(run_dir), *arguments(images, tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    assert not (run_dir / "pwned").exists() and sorted(p.name for p in run_dir.iterdir()) == before


def test_every_bad_predict_argument_is_reported(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["predict", "--run", str(tmp_path / "nowhere"), "--device", "gpu", str(tmp_path / "missing.png"),
                 str(tmp_path / "folder"), str(tmp_path / "notes.png")]) == 2
    err = capsys.readouterr().err
    for word in ["5 bad arguments", f"--run {tmp_path / 'nowhere'}: no such folder", "--device 'gpu': not a torch device",
                 "missing.png: no such file", f"{tmp_path / 'folder'}: a folder without image files",
                 "notes.png: not a readable image"]:
        assert word in err, (word, err)


def _write_test_images(run_dir, folder) -> list:
    spec = RunSpec.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    split = prepare_dataset(spec).splits["test"]
    folder.mkdir()
    paths = []
    for i, image_id in enumerate(split.ids):
        paths.append(folder / image_id.replace("/", "_"))
        split.load_image(i).save(paths[-1], format="PNG")
    return paths


def test_a_maxvit_run_trained_at_64px_predicts_its_own_test_images(tmp_path, capsys):
    """The README smoke recipe's shape: MaxViT-T at 64 px (partition size 2), random init, one epoch."""
    data = {"format": "synthetic", "image_size": 64, "max_per_split": 8,
            "synthetic": {"num_classes": 4, "train": 8, "valid": 8, "test": 8, "image_size": 64}}
    models = [{"backbone": {"name": "maxvit_t", "pretrained": False}, "head": {"name": "regression"}}]
    train = {"epochs": 1, "batch_size": 8, "augmentation": "none", "ema": {"enabled": False}}
    path = small_experiment(tmp_path, models=models, data=data, train=train)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    run_dir = out / "runs" / "maxvit_t-regression__s0"
    saved = RunSpec.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert saved.build.input_size == 64 and saved.build.classes == [f"LEVEL_{k}" for k in range(4)]
    run = benchkit.load_run(run_dir, device="cpu")
    assert run.input_size == 64
    paths = _write_test_images(run_dir, tmp_path / "images")
    expected = _expected(run_dir)
    results = run.predict_files(paths)
    assert len(results) == len(expected) == 8
    for item in results:
        row = expected.loc[item["image"].rsplit("/", 1)[-1]]
        assert item["level"] == row.pred and item["score"] == pytest.approx(row.score, abs=1e-5)
    capsys.readouterr()
    assert main(["predict", "--run", str(run_dir), str(paths[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["level"] == expected.loc[paths[0].name].pred
