"""Predicting from any kind of image: a path, a PIL image, a uint8 array and a tensor of one picture give one
input and the same levels; folders are searched recursively and decoded a batch at a time; the CSV of a folder
has one row per image."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchkit.data import inputs
from benchkit.errors import DataError


def _picture(seed: int = 0, size=(37, 29)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def test_every_kind_of_one_picture_decodes_to_the_same_pixels(tmp_path):
    pixels = _picture()
    path = tmp_path / "a.png"
    Image.fromarray(pixels).save(path)
    kinds = {"path": path, "text path": str(path), "PIL": Image.open(path), "array": pixels,
             "tensor": torch.from_numpy(pixels).permute(2, 0, 1),
             "float tensor": torch.from_numpy(pixels).permute(2, 0, 1).float() / 255}
    decoded = {name: inputs.decode(inputs.as_items(item), 24) for name, item in kinds.items()}
    for name, batch in decoded.items():
        assert batch.shape == (1, 3, 24, 24) and batch.dtype == torch.uint8, name
        assert torch.equal(batch, decoded["path"]), name


def test_many_images_in_one_call_and_batches():
    pictures = np.stack([_picture(seed) for seed in range(5)])
    assert len(inputs.as_items(pictures)) == 5                                  # (N, H, W, 3)
    assert len(inputs.as_items(torch.from_numpy(pictures).permute(0, 3, 1, 2))) == 5  # (N, 3, H, W)
    assert len(inputs.as_items([Image.fromarray(p) for p in pictures])) == 5
    batches = list(inputs.decode_batches(inputs.as_items(pictures), 16, batch_size=2))
    assert [start for start, _ in batches] == [0, 2, 4] and [len(b) for _, b in batches] == [2, 2, 1]
    whole = inputs.decode(inputs.as_items(pictures), 16)
    assert torch.equal(torch.cat([b for _, b in batches]), whole)


def test_folders_are_searched_recursively_for_image_files(tmp_path):
    for name in ("b.png", "sub/a.jpg", "sub/deeper/c.PNG", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            Image.fromarray(_picture()).save(tmp_path / name)
    found = inputs.image_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b.png", "sub/a.jpg", "sub/deeper/c.PNG"]
    with pytest.raises(DataError, match="image not found"):
        inputs.image_files([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        inputs.image_files([tmp_path / "empty"])


@pytest.mark.parametrize("bad, words", [(np.zeros((8, 8, 3), np.float32), "must be uint8"),
                                        (np.zeros((8, 8, 5), np.uint8), "(H, W) or (H, W, 3|4)"),
                                        (torch.zeros(5, 8, 8, dtype=torch.uint8), "C = 1, 3 or 4"),
                                        (torch.zeros(3, 8, 8, dtype=torch.int32), "uint8 (0..255) or float"),
                                        (42, "cannot read an image from a int")])
def test_an_unusable_image_is_a_data_error_saying_what_is_expected(bad, words):
    with pytest.raises(DataError) as err:
        inputs.decode(inputs.as_items(bad) if not isinstance(bad, int) else [bad], 8)
    assert words in str(err.value)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from benchkit.cli import main
    from conftest import small_experiment
    tmp = tmp_path_factory.mktemp("inputs")
    experiment = small_experiment(tmp, models=[{"backbone": "tiny_cnn", "head": "softmax"}])
    assert main(["run", str(experiment), "--out", str(tmp / "out"), "--quiet"]) == 0
    return tmp / "out" / "runs" / "tiny_cnn-softmax__s0"


def test_loaded_run_gives_the_same_levels_for_a_path_a_pil_image_an_array_and_a_tensor(run_dir, tmp_path):
    import benchkit
    run = benchkit.load_run(run_dir, device="cpu")
    pictures = [_picture(seed, size=(20 + 7 * seed, 50 - 3 * seed)) for seed in range(8)]
    paths = []
    for i, pixels in enumerate(pictures):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    kinds = {"path": paths, "PIL": [Image.open(p) for p in paths], "array": pictures,
             "tensor": [torch.from_numpy(p).permute(2, 0, 1) for p in pictures]}
    got = {name: run.predict(images) for name, images in kinds.items()}
    levels = {name: [r["level"] for r in results] for name, results in got.items()}
    assert len(set(map(tuple, levels.values()))) == 1, levels
    for name, results in got.items():
        assert [r["score"] for r in results] == [r["score"] for r in got["path"]], name
        assert [r["probabilities"] for r in results] == [r["probabilities"] for r in got["path"]], name
    assert [r["image"] for r in got["path"]] == [str(p) for p in paths] and "image" not in got["array"][0]
    one = run.predict(pictures[3])                      # one image, not in a list
    assert len(one) == 1 and one[0]["level"] == levels["path"][3]
    frame = run.predict(np.stack([pictures[0], pictures[0]]), as_frame=True)   # a 4-D batch, as a table
    assert list(frame.columns) == ["image", "level", "level_name", "score"] + [f"prob_{c}" for c in run.classes]
    assert frame.image.tolist() == ["0", "1"] and (frame.level == levels["path"][0]).all()


def test_predict_on_a_folder_writes_one_csv_row_per_image_decoding_a_batch_at_a_time(run_dir, tmp_path, capsys,
                                                                                      monkeypatch):
    import benchkit
    from benchkit.cli import main
    folder = tmp_path / "photos"
    names = [f"{sub}img{i}.png" for i in range(45) for sub in ([""] if i % 3 else ["nested/", ])]
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_picture(i)).save(folder / name)
    (folder / "README.txt").write_text("not an image")
    decoded_batches = []
    decode = inputs.decode
    monkeypatch.setattr(inputs, "decode", lambda items, size: decoded_batches.append(len(items)) or decode(items, size))
    csv = tmp_path / "grades.csv"
    capsys.readouterr()
    assert main(["predict", "--run", str(run_dir), str(folder), "--csv", str(csv), "--device", "cpu"]) == 0
    table = pd.read_csv(csv)
    run = benchkit.load_run(run_dir, device="cpu")
    assert len(table) == len(names) == 45 and table.image.is_unique
    assert sorted(table.image) == sorted(str(folder / n) for n in names)
    assert list(table.columns) == ["image", "level", "level_name", "score"] + [f"prob_{c}" for c in run.classes]
    batch = run.runtime.eval_batch_size
    assert max(decoded_batches) <= batch < 45 and sum(decoded_batches) == 45  # never all images at once
    one = run.predict(folder / names[7])[0]
    row = table.set_index("image").loc[str(folder / names[7])]
    assert (row.level, row.level_name) == (one["level"], one["level_name"]) and row.score == pytest.approx(one["score"])
    assert "predicting 45 image(s)" in capsys.readouterr().err   # the progress of a many-batch prediction
