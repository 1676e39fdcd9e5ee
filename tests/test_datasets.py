import numpy as np
import pytest
from PIL import Image

from benchkit.data.formats.imagefolder import read_imagefolder
from benchkit.data.formats.roboflow import read_roboflow_csv
from benchkit.errors import DataError
from benchkit.data.synthetic import make_synthetic_dataset


def _write_export(root, rows, header="filename, A, B, C", split="train"):
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for name, onehot in rows:
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / name)
        lines.append(",".join([name, *map(str, onehot)]))
    (folder / "_classes.csv").write_text("\n".join(lines) + "\n")


def test_roboflow_csv_with_spaced_header(tmp_path):
    _write_export(tmp_path, [("a.jpg", [0, 1, 0]), ("b.jpg", [0, 0, 1])])
    _write_export(tmp_path, [("v.jpg", [1, 0, 0])], split="valid")  # every class has an image somewhere
    ds = read_roboflow_csv(tmp_path)
    assert ds.classes == ["A", "B", "C"]
    assert ds.splits["train"].labels.tolist() == [1, 2]
    assert ds.splits["train"].ids == ["train/a.jpg", "train/b.jpg"]


def test_class_order_from_config_reorders_columns(tmp_path):
    _write_export(tmp_path, [("a.jpg", [0, 1, 0])])
    ds = read_roboflow_csv(tmp_path, classes=["C", "B", "A"])
    assert ds.splits["train"].labels.tolist() == [1]


def test_non_one_hot_rows_are_listed_with_line_numbers(tmp_path):
    _write_export(tmp_path, [("a.jpg", [0, 1, 0]), ("b.jpg", [1, 1, 0]), ("c.jpg", [0, 0, 0])])
    with pytest.raises(DataError) as err:
        read_roboflow_csv(tmp_path)
    assert "line 3 (b.jpg)" in str(err.value) and "line 4 (c.jpg)" in str(err.value)


def test_unknown_class_column_is_named(tmp_path):
    _write_export(tmp_path, [("a.jpg", [0, 1, 0])], header="filename, A, B, Z")
    with pytest.raises(DataError, match=r"unknown columns \['Z'\]"):
        read_roboflow_csv(tmp_path, classes=["A", "B", "C"])


def test_missing_and_corrupt_images_listed_first_ten_and_count(tmp_path):
    _write_export(tmp_path, [(f"{i}.jpg", [1, 0, 0]) for i in range(14)])
    _write_export(tmp_path, [("b.jpg", [0, 1, 0]), ("c.jpg", [0, 0, 1])], split="valid")
    for i in range(12):
        (tmp_path / "train" / f"{i}.jpg").write_bytes(b"not a jpeg" if i % 2 else b"")
    (tmp_path / "train" / "13.jpg").unlink()
    with pytest.raises(DataError) as err:
        read_roboflow_csv(tmp_path)
    text = str(err.value)
    assert "13 problem(s)" in text and "and 3 more" in text and "empty file" in text
    assert "cannot be decoded" in text


def test_grayscale_and_rgba_are_converted_with_a_note(tmp_path):
    folder = tmp_path / "train" / "low"
    folder.mkdir(parents=True)
    Image.new("L", (8, 8), 100).save(folder / "g.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(folder / "r.png")
    ds = read_imagefolder(tmp_path, ["low", "high"])
    split = ds.splits["train"]
    assert split.load_image(0).mode == "RGB" and split.load_image(1).mode == "RGB"
    assert "converted to RGB" in split.notes[0]


def test_imagefolder_rejects_unknown_class_folder(tmp_path):
    (tmp_path / "train" / "mystery").mkdir(parents=True)
    with pytest.raises(DataError, match="mystery"):
        read_imagefolder(tmp_path, ["low", "high"])


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        read_roboflow_csv(tmp_path / "nope")


def test_synthetic_is_seeded_balanced_and_ordinal():
    a = make_synthetic_dataset(num_classes=4, sizes={"train": 40}, image_size=32, seed=3)
    b = make_synthetic_dataset(num_classes=4, sizes={"train": 40}, image_size=32, seed=3)
    sa, sb = a.splits["train"], b.splits["train"]
    assert np.array_equal(np.asarray(sa.load_image(5)), np.asarray(sb.load_image(5)))
    assert np.bincount(sa.labels).tolist() == [10, 10, 10, 10]
    # the skin-coloured (bright) area grows with the level
    bright = [np.mean(np.asarray(sa.load_image(i)).mean(axis=2) > 120) for i in range(40)]
    means = [np.mean([b for b, y in zip(bright, sa.labels) if y == k]) for k in range(4)]
    assert means == sorted(means) and means[-1] > 2 * means[0]


def test_real_export_reads_all_splits(hair_loss_root):
    ds = read_roboflow_csv(hair_loss_root, check_images=False)
    assert ds.classes == ["LEVEL_2", "LEVEL_3", "LEVEL_4", "LEVEL_5", "LEVEL_6", "LEVEL_7"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 1294, "valid": 133, "test": 67}


def test_the_readers_old_path_still_imports_with_a_deprecation_warning(tmp_path):
    import benchkit.data.datasets as datasets
    with pytest.warns(DeprecationWarning, match="import it from benchkit.data.formats.roboflow"):
        assert datasets.read_roboflow_csv is read_roboflow_csv
    with pytest.warns(DeprecationWarning, match="imagefolder"):
        assert datasets.read_imagefolder is read_imagefolder
