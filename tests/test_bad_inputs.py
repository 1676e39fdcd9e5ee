"""Bad input, each with a clear message, the right exit status and nothing half-written.

Config, data, weights and name errors are found before any training: exit status 2, a message naming
the key, file or row, and no output folder at all. Faults during a run (out of memory, NaN loss) fail
that run only: its metrics.json says ``failed``, it leaves no best weights or predictions, and the
other runs finish.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import yaml
from PIL import Image

from benchkit.cli import main
from benchkit.io import read_json
from benchkit.results.leaderboard import grid_columns
from benchkit.registry import BACKBONES
from conftest import TINY_PLUGIN

FAULTY_PLUGIN = Path(__file__).parent / "plugins" / "faulty.py"
CLASSES = ["LEVEL_2", "LEVEL_3", "LEVEL_4"]
SIZES = {"train": 4, "valid": 2, "test": 2}


def write_roboflow_export(root: Path) -> None:
    """A tiny Roboflow CSV export: 32x32 JPEGs, ``SIZES[split]`` images per class, one-hot rows."""
    rng = np.random.default_rng(0)
    for split, per_class in SIZES.items():
        folder = root / split
        folder.mkdir(parents=True)
        lines = ["filename, " + ", ".join(CLASSES)]
        for level in range(len(CLASSES)):
            for i in range(per_class):
                name = f"img_{level}_{i}.jpg"
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // (level + 1)
                Image.fromarray(pixels).save(folder / name, quality=90)
                lines.append(f"{name}, " + ", ".join("1" if k == level else "0" for k in range(len(CLASSES))))
        (folder / "_classes.csv").write_text("\n".join(lines) + "\n")


def base_experiment() -> dict:
    return {
        "name": "bad", "plugins": [str(TINY_PLUGIN), str(FAULTY_PLUGIN)],
        "data": {"format": "roboflow_csv", "root": "data", "image_size": 32},
        "models": [{"backbone": "tiny_cnn", "head": "regression"}],
        "train": {"epochs": 1, "batch_size": 8, "augmentation": "none", "ema": {"enabled": False},
                  "device": "cpu"},
        "evaluation": {"bootstrap": {"n_resamples": 0}},
    }


def _csv_lines(root: Path, split: str) -> list[str]:
    return (root / split / "_classes.csv").read_text().splitlines()


def _write_csv_lines(root: Path, split: str, lines: list[str]) -> None:
    (root / split / "_classes.csv").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- the bad inputs

def misspelled_key(raw, data):
    raw["train"]["epoch"] = 1


def unknown_nested_key(raw, data):
    raw["models"][0]["backbone"] = {"name": "tiny_cnn", "pretrianed": False}


def wrong_type(raw, data):
    raw["train"]["batch_size"] = "large"


def missing_data_folder(raw, data):
    raw["data"]["root"] = str(data.parent / "nowhere")


def data_root_is_a_file(raw, data):
    raw["data"]["root"] = str(data / "train" / "_classes.csv")


def empty_split(raw, data):
    _write_csv_lines(data, "train", _csv_lines(data, "train")[:1])


def csv_row_missing_a_column(raw, data):
    lines = _csv_lines(data, "valid")
    lines[2] = lines[2].rsplit(",", 1)[0]
    _write_csv_lines(data, "valid", lines)


def csv_row_not_one_hot(raw, data):
    lines = _csv_lines(data, "train")
    lines[1] = "img_0_0.jpg, 1, 1, 0"
    _write_csv_lines(data, "train", lines)


def truncated_image(raw, data):
    path = data / "test" / "img_1_0.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def not_an_image(raw, data):
    (data / "train" / "img_2_1.jpg").write_text("<html>404 not found</html>")


def class_in_test_not_in_train(raw, data):
    for split in ("train", "valid"):
        _write_csv_lines(data, split, [line for line in _csv_lines(data, split) if not line.endswith("0, 0, 1")])


def missing_classes_csv(raw, data):
    (data / "train" / "_classes.csv").unlink()


def _add_empty_column(data, name: str = "LEVEL_8") -> None:
    for split in SIZES:
        lines = _csv_lines(data, split)
        _write_csv_lines(data, split, [lines[0] + f", {name}"] + [line + ", 0" for line in lines[1:]])


def all_zero_class_column(raw, data):
    _add_empty_column(data)


def several_data_problems(raw, data):
    csv_row_missing_a_column(raw, data)
    truncated_image(raw, data)
    (data / "train" / "img_2_1.jpg").unlink()


def unknown_backbone(raw, data):
    raw["models"][0]["backbone"] = "tiny_cn"


def unknown_head(raw, data):
    raw["models"][0]["head"] = "regresion"


def weights_of_another_architecture(raw, data):
    torch.save(BACKBONES.create("tiny_cnn").state_dict(), data.parent / "tiny_cnn.pt")
    raw["models"][0]["backbone"] = {"name": "resnet18", "weights": str(data.parent / "tiny_cnn.pt")}


def grayscale_and_rgba_images(raw, data):
    for name, mode in (("img_0_0.jpg", "L"), ("img_1_1.png", "RGBA")):
        image = Image.open(data / "train" / name.replace(".png", ".jpg")).convert(mode)
        image.save(data / "train" / name)
    lines = [line.replace("img_1_1.jpg", "img_1_1.png") for line in _csv_lines(data, "train")]
    _write_csv_lines(data, "train", lines)


def out_of_memory(raw, data):
    raw["models"].insert(0, {"name": "hungry", "backbone": {"name": "oom_cnn", "options": {"max_batch": 4}},
                             "head": "regression"})


def nan_loss(raw, data):
    raw["train"]["epochs"] = 3
    raw["models"].insert(0, {"name": "unstable", "backbone": "tiny_cnn",
                             "head": {"name": "nan_regression", "nan_steps": [5]}})


def _resnet34_weights_for_resnet18(raw, data, **backbone) -> None:
    torch.manual_seed(0)  # random init: nothing is downloaded
    torch.save(timm.create_model("resnet34", num_classes=0).state_dict(), data.parent / "resnet34.pt")
    raw["models"][0]["backbone"] = {"name": "resnet18", "weights": str(data.parent / "resnet34.pt"), **backbone}


def weights_file_that_is_an_image(raw, data):
    raw["models"][0]["backbone"] = {"name": "resnet18", "weights": str(data / "train" / "img_0_0.jpg")}


def weights_of_a_larger_relative(raw, data):
    _resnet34_weights_for_resnet18(raw, data)


def plugin_raising_at_import(raw, data):
    plugin = data.parent / "broken_plugin.py"
    plugin.write_text("import os\n\nLIMIT = 3\nraise RuntimeError('no GPU driver found')\n")
    raw["plugins"].append(str(plugin))


def plugin_with_a_syntax_error(raw, data):
    plugin = data.parent / "typo_plugin.py"
    plugin.write_text("from benchkit import register_head\n\ndef head(:\n    pass\n")
    raw["plugins"].append(str(plugin))


def batch_size_of_one(raw, data):
    raw["train"]["batch_size"] = 1


def a_single_training_image(raw, data):
    raw["data"]["max_per_split"] = 1


def empty_list_in_grid(raw, data):
    raw["grid"] = {"backbone.dropout": [0.0, 0.2, 0.5], "backbone.freeze": []}


def misspelled_grid_key(raw, data):
    raw["grid"] = {"backbone.dropuot": [0.0, 0.2]}


REJECTED = [  # (case, words the message must hold)
    (misspelled_key, ["train.epoch", "did you mean 'epochs'"]),
    (unknown_nested_key, ["models.0.backbone.pretrianed", "did you mean 'pretrained'"]),
    (wrong_type, ["train.batch_size", "'large'"]),
    (missing_data_folder, ["data folder not found", "nowhere"]),
    (data_root_is_a_file, ["data.root", "_classes.csv is a file; give the dataset folder"]),
    (empty_split, ["split 'train' has no images"]),
    (csv_row_missing_a_column, ["valid/_classes.csv", "line 3", "3 fields, expected 4"]),
    (csv_row_not_one_hot, ["train/_classes.csv", "line 2", "img_0_0.jpg", "not one-hot"]),
    (truncated_image, ["test/img_1_0.jpg", "cannot be decoded"]),
    (not_an_image, ["train/img_2_1.jpg", "cannot be decoded"]),
    (class_in_test_not_in_train, ["LEVEL_4", "split 'test' but not in train"]),
    (missing_classes_csv, ["train/_classes.csv is missing", "the labels of the 12 image(s)"]),
    (all_zero_class_column, ["class column(s) ['LEVEL_8']", "no image in any split", "data.classes"]),
    (several_data_problems, ["3 problem(s)", "valid/_classes.csv: line 3: 3 fields, expected 4",
                             "test/img_1_0.jpg: cannot be decoded", "train/img_2_1.jpg: missing file"]),
    (unknown_backbone, ["unknown backbone 'tiny_cn'", "did you mean 'tiny_cnn'"]),
    (unknown_head, ["unknown head 'regresion'", "did you mean 'regression'"]),
    (weights_of_another_architecture, ["tiny_cnn.pt", "another architecture"]),
    (weights_file_that_is_an_image, ["cannot read weights file", "img_0_0.jpg", "not a PyTorch file"]),
    (weights_of_a_larger_relative, ["resnet34.pt", "in the file but not in the model", "layer1.2.conv1.weight",
                                    "weights_strict: false"]),
    (plugin_raising_at_import, ["plugin file", "broken_plugin.py", "line 4", "RuntimeError: no GPU driver found"]),
    (plugin_with_a_syntax_error, ["plugin file", "typo_plugin.py", "line 3", "syntax error"]),
    (batch_size_of_one, ["train.batch_size", "greater than or equal to 2"]),
    (a_single_training_image, ["split 'train' has a single image", "at least 2"]),
    (empty_list_in_grid, ["experiment.yaml", "grid key 'backbone.freeze' has an empty list"]),
    (misspelled_grid_key, ["experiment.yaml", "unknown key 'grid.backbone.dropuot'", "did you mean 'dropout'"]),
]

FAILED_RUN = [  # (case, failed run, words its error must hold)
    (out_of_memory, "hungry__s0", ["out of memory with batch_size 8", "train.batch_size=4"]),
    (nan_loss, "unstable__s0", ["non-finite training loss at epoch 3, step 1"]),
]


def _run(tmp_path: Path, case, *extra: str) -> tuple[int, Path, str]:
    data = tmp_path / "data"
    write_roboflow_export(data)
    raw = base_experiment()
    case(raw, data)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    return main(["run", str(experiment), "--out", str(out), "--quiet", *extra]), out, experiment


@pytest.mark.parametrize("case, words", REJECTED, ids=[c.__name__ for c, _ in REJECTED])
def test_bad_input_is_refused_before_training(tmp_path, capsys, case, words):
    code, out, _ = _run(tmp_path, case)
    err = capsys.readouterr().err
    assert code == 2, err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


@pytest.mark.parametrize("case, failed, words", FAILED_RUN, ids=[c.__name__ for c, _, _ in FAILED_RUN])
def test_fault_during_a_run_fails_that_run_only(tmp_path, capsys, case, failed, words):
    code, out, _ = _run(tmp_path, case)
    err = capsys.readouterr().err
    assert code == 1, err
    board = pd.read_csv(out / "leaderboard.csv").set_index("run_id")
    assert board.status.to_dict() == {failed: "failed", "tiny_cnn-regression__s0": "ok"}
    for word in words:
        assert word in board.error[failed] and word in err, (word, board.error[failed])
    run_dir = out / "runs" / failed
    assert read_json(run_dir / "metrics.json")["row"]["status"] == "failed"
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(("best", "predictions", "history"))]
    assert (run_dir / "error.log").is_file()


def test_grayscale_and_rgba_images_are_converted_with_a_note(tmp_path, capsys):
    code, out, _ = _run(tmp_path, grayscale_and_rgba_images)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "2 image(s) in train are not RGB and are converted to RGB" in err
    assert "img_0_0.jpg (L)" in err and "img_1_1.png (RGBA)" in err
    assert pd.read_csv(out / "leaderboard.csv").status.tolist() == ["ok"]


def test_16_bit_images_are_scaled_to_8_bits_with_a_note(tmp_path, capsys):
    def sixteen_bit_image(raw, data):
        pixels = np.asarray(Image.open(data / "train" / "img_0_0.jpg").convert("L"), dtype=np.uint16) * 257
        Image.fromarray(pixels).save(data / "train" / "img_0_0.png")  # mode I;16, spans 0..65535
        _write_csv_lines(data, "train", [line.replace("img_0_0.jpg", "img_0_0.png")
                                         for line in _csv_lines(data, "train")])
        raw["data"]["cache_dir"] = str(data.parent / "cache")

    code, out, _ = _run(tmp_path, sixteen_bit_image)
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long notes
    assert code == 0, err
    assert "img_0_0.png (I;16)" in err and "1 with 16-bit, 32-bit or float pixels scaled to 8 bits" in err
    assert pd.read_csv(out / "leaderboard.csv").status.tolist() == ["ok"]


def test_an_empty_level_listed_in_data_classes_is_kept_with_a_note(tmp_path, capsys):
    def listed_empty_level(raw, data):
        _add_empty_column(data)
        raw["data"]["classes"] = [*CLASSES, "LEVEL_8"]

    code, out, _ = _run(tmp_path, listed_empty_level)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0, err
    assert "class(es) ['LEVEL_8'] of data.classes have no image in any split" in err
    assert read_json(out / "runs" / "tiny_cnn-regression__s0" / "metrics.json")["row"]["num_classes"] == 4


def test_weights_strict_false_loads_what_fits_and_the_run_records_what_it_skipped(tmp_path, capsys):
    code, out, _ = _run(tmp_path, lambda raw, data: _resnet34_weights_for_resnet18(raw, data, weights_strict=False))
    assert code == 0, capsys.readouterr().err
    run_dir = out / "runs" / "resnet18-regression__s0"
    skipped = read_json(run_dir / "details.json")["weights"]
    assert skipped["missing"] == [] and skipped["mismatched"] == [] and "layer1.2.conv1.weight" in skipped["unexpected"]
    row = read_json(run_dir / "metrics.json")["row"]
    assert row["status"] == "ok" and row["weights_skipped"] == len(skipped["unexpected"]) > 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert grid_columns(board) == []  # a bookkeeping column (after weights_source), not a grid key
    assert board.columns.get_loc("weights_skipped") == board.columns.get_loc("weights_source") + 1


def test_a_last_training_batch_of_one_image_joins_the_batch_before(tmp_path, capsys):
    """41 training images in batches of 8 would leave one image alone, which BatchNorm cannot train on
    (ResNet-18 at 32 px ends in 1x1 feature maps: one value per channel); evaluation batches of any
    size (here 9 and 17 images in batches of 8) are fine."""
    def lone_last_image(raw, data):
        raw["data"] = {"format": "synthetic", "image_size": 32,
                       "synthetic": {"num_classes": 3, "train": 41, "valid": 9, "test": 17, "image_size": 32}}
        raw["models"] = [{"backbone": "resnet18", "head": "regression"}]
        raw["train"]["eval_batch_size"] = 8

    code, out, _ = _run(tmp_path, lone_last_image)
    assert code == 0, capsys.readouterr().err
    assert pd.read_csv(out / "leaderboard.csv").status.tolist() == ["ok"]
    assert len(pd.read_csv(out / "runs" / "resnet18-regression__s0" / "predictions_test.csv")) == 17


def test_training_batches_are_never_a_single_image():
    from torch.utils.data import BatchSampler, RandomSampler

    from benchkit.training.batches import TrainBatches
    for size, batch, sizes in [(41, 8, [8, 8, 8, 8, 9]), (42, 8, [8, 8, 8, 8, 8, 2]), (9, 8, [9]), (5, 2, [2, 3])]:
        merged = list(TrainBatches(RandomSampler(range(size), generator=torch.Generator().manual_seed(1)), batch))
        plain = list(BatchSampler(RandomSampler(range(size), generator=torch.Generator().manual_seed(1)), batch,
                                  drop_last=False))
        assert [len(b) for b in merged] == sizes and len(TrainBatches(range(size), batch)) == len(sizes)
        assert merged[:-1] == plain[:len(merged) - 1] and sum(merged, []) == sum(plain, [])


def test_nan_policy_skip_skips_and_counts_the_steps(tmp_path, capsys):
    def skip_nan(raw, data):
        nan_loss(raw, data)
        raw["models"][0]["head"]["nan_steps"] = [2, 5]
        raw["train"]["nan_policy"] = "skip"

    code, out, _ = _run(tmp_path, skip_nan)
    assert code == 0, capsys.readouterr().err
    board = pd.read_csv(out / "leaderboard.csv").set_index("run_id")
    assert board.status.tolist() == ["ok", "ok"]
    assert board.skipped_steps.to_dict() == {"unstable__s0": 2, "tiny_cnn-regression__s0": 0}
    history = pd.read_csv(out / "runs" / "unstable__s0" / "history.csv")
    assert np.isfinite(history.train_loss).all()
