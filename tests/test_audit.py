"""``benchkit data check`` on folders written here, on a slice of the real data and on all of it."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.fftpack
import yaml
from PIL import Image

from benchkit.cli import main as cli_main
from benchkit.data.audit import audit_dataset
from benchkit.data.image_hashes import dihedral_phash, hash_thumbnail, near_duplicate_pairs

CLASSES = ["LEVEL_2", "LEVEL_3", "LEVEL_4"]
STABLE_KEYS = {"dataset", "splits", "unreadable", "label_problems", "sizes", "modes", "exact_duplicates",
               "near_duplicates", "subject_overlap", "problems", "clean"}


def _pattern(seed: int, size: int = 64) -> Image.Image:
    """A smooth random picture: distinct seeds give perceptually unrelated images."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _write_roboflow(root: Path, rows: dict[str, list[tuple[str, Image.Image | None, list[int]]]]) -> Path:
    """``rows[split] = [(file name, image or None for no file, one-hot cells)]`` -> a Roboflow CSV export."""
    for split, items in rows.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["filename, " + ", ".join(CLASSES)]
        for name, image, cells in items:
            if image is not None:
                image.save(folder / name)
            lines.append(",".join([name] + [str(c) for c in cells]))
        (folder / "_classes.csv").write_text("\n".join(lines) + "\n")
    return root


def _clean_rows():
    hot = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    return {
        "train": [(f"{i}-Front_jpg.rf.t{i}.png", _pattern(i), hot[i % 3]) for i in range(1, 10)],
        "valid": [(f"{i}-Back_jpg.rf.v{i}.png", _pattern(i), hot[i % 3]) for i in range(20, 23)],
        "test": [(f"{i}Left_jpg.rf.s{i}.png", _pattern(i), hot[i % 3]) for i in range(30, 33)],
    }


def _check_json(args: list[str], capsys) -> tuple[int, dict]:
    code = cli_main(["data", "check", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_dihedral_phash_matches_the_classic_phash_and_ignores_rotations():
    thumb = np.asarray(_pattern(5, 32).convert("L"), dtype=np.float64)
    coefficients = scipy.fftpack.dct(scipy.fftpack.dct(thumb, axis=0), axis=1)[:8, :8]
    bits = (coefficients > np.median(coefficients)).flatten()
    expected = sum(1 << i for i, bit in enumerate(bits) if bit)
    hashes = dihedral_phash(thumb)
    assert hashes.shape == (1, 8) and int(hashes[0, 0]) == expected
    variants = [np.rot90(thumb, 1), np.rot90(thumb, 2), thumb[:, ::-1], thumb[::-1, :], thumb.T]
    stacked = dihedral_phash(np.stack([thumb, *variants, np.asarray(_pattern(6, 32).convert("L"), float)]))
    i, j, d = near_duplicate_pairs(stacked, threshold=6)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert {(a, b) for a in range(6) for b in range(a + 1, 6)} <= pairs
    assert not any(6 in pair for pair in pairs)
    assert (d[[k for k, p in enumerate(zip(i, j)) if 6 not in p]] == 0).all()


def test_dihedral_phash_agrees_with_the_imagehash_package():
    imagehash = pytest.importorskip("imagehash")
    for seed in range(5):
        thumb = hash_thumbnail(_pattern(seed, 128))
        reference = imagehash.phash(Image.fromarray(thumb.astype(np.uint8)), hash_size=8, highfreq_factor=4)
        expected = sum(1 << k for k, bit in enumerate(reference.hash.flatten()) if bit)
        assert int(dihedral_phash(thumb)[0, 0]) == expected


def test_near_duplicate_pairs_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(12, 8), dtype=np.uint64)
    base[5] = base[2] ^ np.uint64(0b1011)
    base[7, 3] = base[1, 0] ^ np.uint64(1 << 40)
    i, j, d = near_duplicate_pairs(base, threshold=5)
    brute = {}
    for a in range(12):
        for b in range(a + 1, 12):
            dist = min(min(bin(int(base[a, g]) ^ int(base[b, 0])).count("1"),
                           bin(int(base[b, g]) ^ int(base[a, 0])).count("1")) for g in range(8))
            if dist <= 5:
                brute[(a, b)] = dist
    assert dict(zip(zip(i.tolist(), j.tolist()), d.tolist())) == brute
    assert brute == {(2, 5): 3, (1, 7): 1}


def test_a_clean_folder_exits_0_with_stable_keys(tmp_path, capsys):
    root = _write_roboflow(tmp_path / "ds", _clean_rows())
    code, report = _check_json([root], capsys)
    assert code == 0 and report["clean"] is True and report["problems"] == []
    assert STABLE_KEYS <= set(report)
    assert report["splits"]["train"] == {"count": 9,
                                        "class_counts": {"LEVEL_2": 3, "LEVEL_3": 3, "LEVEL_4": 3}}
    assert report["sizes"] == {"64x64": 15} and report["modes"] == {"RGB": 15}
    assert report["subject_overlap"]["test"] == {"subjects": 3, "overlapping": {"train": 0, "valid": 0},
                                                 "overlapping_train": 0, "examples": []}


def test_a_class_without_images_is_a_problem_unless_the_classes_were_given(tmp_path, capsys):
    rows = {split: [(name, image, [*cells, 0]) for name, image, cells in items]
            for split, items in _clean_rows().items()}
    root = _write_roboflow(tmp_path / "ds", rows)
    for split in rows:  # an extra all-zero LEVEL_8 column
        csv_path = root / split / "_classes.csv"
        lines = csv_path.read_text().splitlines()
        csv_path.write_text("\n".join([lines[0] + ", LEVEL_8", *lines[1:]]) + "\n")
    code, report = _check_json([root], capsys)
    assert code == 1 and report["empty_classes"] == ["LEVEL_8"]
    assert [f["kind"] for f in report["findings"]] == ["empty_classes"]
    assert "class(es) ['LEVEL_8'] have no image in any split" in report["problems"][0]
    code, report = _check_json([root, "--classes", *CLASSES, "LEVEL_8"], capsys)
    assert code == 0 and report["clean"] and any("LEVEL_8" in note for note in report["notes"])


def test_every_kind_of_problem_is_reported_together(tmp_path, capsys):
    rows = _clean_rows()
    rows["train"].append(("40-Top_jpg.rf.bad.png", _pattern(40), [1, 1, 0]))
    rows["train"].append(("41-Top_jpg.rf.unk.png", _pattern(41), [1, 0, 0, 0]))
    rows["train"].append(("42-Top_jpg.rf.gone.png", None, [1, 0, 0]))
    rows["valid"].append(("3-Right_jpg.rf.same.png", _pattern(3), [1, 0, 0]))
    turned = _pattern(4).transpose(Image.Transpose.ROTATE_90)
    rows["test"].append(("77-Top_jpg.rf.turned.png", turned, [1, 0, 0]))
    rows["test"].append(("5-Top_jpg.rf.subject.png", _pattern(55), [0, 0, 1]))
    root = _write_roboflow(tmp_path / "ds", rows)
    (root / "test" / "loose.png").write_bytes((root / "test" / "30Left_jpg.rf.s30.png").read_bytes()[:10])
    jpeg = root / "train" / "9-Front_jpg.rf.t9.png"
    _pattern(9).save(buffer := tmp_path / "full.jpg", quality=95)
    jpeg.write_bytes(buffer.read_bytes()[: buffer.stat().st_size // 2])

    code, report = _check_json([root], capsys)
    assert code == 1 and report["clean"] is False
    unreadable = {u["id"]: u["reason"] for u in report["unreadable"]}
    assert unreadable["train/42-Top_jpg.rf.gone.png"] == "missing file"
    assert "truncated" in unreadable["train/9-Front_jpg.rf.t9.png"]
    assert "test/loose.png" in unreadable
    reasons = [(p["where"], p["line"], p["reason"]) for p in report["label_problems"]]
    assert ("train/_classes.csv", 11, "not one-hot [1, 1, 0]") in reasons
    assert ("train/_classes.csv", 12, "5 fields, expected 4") in reasons
    assert [u["id"] for u in report["unlabelled_images"]] == ["test/loose.png"]
    assert "loose.png has no label row in test/_classes.csv" in report["unlabelled_images"][0]["reason"]
    assert report["splits"]["train"]["count"] == 10
    across = report["exact_duplicates"]["across_splits"]
    assert [g["ids"] for g in across] == [["train/3-Front_jpg.rf.t3.png", "valid/3-Right_jpg.rf.same.png"]]
    assert across[0]["labels_differ"] is False
    near = [(p["a"], p["b"]) for p in report["near_duplicates"]["across_splits"]]
    assert near == [("train/4-Front_jpg.rf.t4.png", "test/77-Top_jpg.rf.turned.png")]
    test_overlap = report["subject_overlap"]["test"]
    assert test_overlap["overlapping_train"] == 1 and test_overlap["examples"] == ["LEVEL_4:5"]
    assert report["subject_overlap"]["valid"]["examples"] == ["LEVEL_2:3"]
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds == {"unreadable", "label_problems", "unlabelled_images", "exact_duplicates_across_splits",
                     "near_duplicates_across_splits", "subject_overlap"}


def test_duplicates_with_different_labels_and_unknown_class_columns(tmp_path):
    rows = _clean_rows()
    rows["test"].append(("90-Top.png", _pattern(1), [1, 0, 0]))
    root = _write_roboflow(tmp_path / "ds", rows)
    report = audit_dataset(root, classes=["LEVEL_2", "LEVEL_3"])
    assert report["exact_duplicates"]["across_splits"][0]["labels_differ"] is True
    assert "conflicting_duplicate_labels" in {f["kind"] for f in report["findings"]}
    unknown = [p for p in report["label_problems"] if p["reason"] == "names unknown class 'LEVEL_4'"]
    assert len(unknown) == 5 and report["splits"]["train"]["count"] == 6


def test_imagefolder_layout_is_detected_and_unknown_folders_reported(tmp_path, capsys):
    root = tmp_path / "folders"
    for split, offset in (("train", 0), ("valid", 100)):
        for k, cls in enumerate(["mild", "severe"]):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                _pattern(offset + 10 * k + i).save(root / split / cls / f"{offset + 10 * k + i}_x.png")
    code, report = _check_json([root], capsys)
    assert code == 0 and report["format"] == "imagefolder" and report["classes"] == ["mild", "severe"]
    assert report["splits"]["valid"]["class_counts"] == {"mild": 3, "severe": 3}
    (root / "valid" / "other").mkdir()
    _pattern(999).save(root / "valid" / "other" / "999_x.png")
    code, report = _check_json([root, "--classes", "mild", "severe"], capsys)
    assert code == 1
    assert [p["reason"] for p in report["label_problems"]] == ["folder 'other' is not a known class"]


def test_experiment_yaml_data_section_is_read(tmp_path, capsys):
    _write_roboflow(tmp_path / "data" / "ds", _clean_rows())
    experiment = tmp_path / "experiments" / "exp.yaml"
    experiment.parent.mkdir()
    experiment.write_text(yaml.safe_dump({"name": "x", "data": {
        "root": "../data/ds", "format": "roboflow_csv", "classes": CLASSES[::-1],
        "subject_regex": r"^(?P<subject>\d+)", "subject_with_label": False}}))
    code, report = _check_json([experiment], capsys)
    assert code == 0 and report["classes"] == CLASSES[::-1]
    assert report["dataset"] == str(tmp_path / "data" / "ds")
    assert report["subject_key"]["with_label"] is False
    synthetic = tmp_path / "syn.yaml"
    synthetic.write_text(yaml.safe_dump({"data": {"format": "synthetic"}}))
    assert cli_main(["data", "check", str(synthetic)]) == 0
    assert "synthetic" in capsys.readouterr().out


def test_unreadable_datasets_exit_2(tmp_path, capsys):
    assert cli_main(["data", "check", str(tmp_path / "absent")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["data", "check", str(tmp_path / "empty")]) == 2
    assert "no splits" in capsys.readouterr().err


def test_terminal_report_lists_problems(tmp_path, capsys):
    rows = _clean_rows()
    rows["valid"].append(("3-Right.png", _pattern(3), [1, 0, 0]))
    root = _write_roboflow(tmp_path / "ds", rows)
    assert cli_main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "Images per split and class" in out and "problem(s):" in out
    assert "train/3-Front_jpg.rf.t3.png = valid/3-Right.png" in out


@pytest.fixture(scope="module")
def full_report(hair_loss_root):
    """The audit of the whole real dataset, computed once for the module."""
    return audit_dataset(hair_loss_root)


def test_real_data_counts_and_no_broken_files(full_report):
    counts = {s: r["count"] for s, r in full_report["splits"].items()}
    assert counts == {"train": 1294, "valid": 133, "test": 67}
    assert full_report["unreadable"] == [] and full_report["label_problems"] == []
    assert full_report["sizes"] == {"640x640": 1494} and full_report["modes"] == {"RGB": 1494}
    assert full_report["seconds"] > 0  # its speed is a ratio in benchmarks/bench_audit.py, not a test


def test_real_data_every_valid_and_test_subject_is_in_train(full_report):
    overlap = full_report["subject_overlap"]
    assert (overlap["valid"]["subjects"], overlap["valid"]["overlapping_train"]) == (88, 88)
    assert (overlap["test"]["subjects"], overlap["test"]["overlapping_train"]) == (58, 58)
    assert full_report["subject_key"]["unmatched"] == 0
    assert "subject_overlap" in {f["kind"] for f in full_report["findings"]} and not full_report["clean"]


def test_real_data_rotated_copies_inside_train_are_found(full_report):
    train = full_report["near_duplicates"]["within_splits"]["train"]
    assert train["groups"] == 465
    partners = {int(k): v for k, v in train["partners"].items()}
    assert max(partners, key=partners.get) == 2 and partners[2] > 1294 / 2
    assert full_report["exact_duplicates"]["across_splits"] == []
    for pair in full_report["near_duplicates"]["across_splits"]:
        assert pair["same_subject"] is True


def _real_rows(root: Path, split: str) -> list[list[str]]:
    with open(root / split / "_classes.csv", newline="") as fh:
        return [row for row in csv.reader(fh)]


def _subject(row: list[str]) -> tuple[int, str]:
    return [int(c) for c in row[1:]].index(1), re.match(r"\d+", row[0]).group()


def _copy_slice(source: Path, dest: Path) -> dict[str, list[list[str]]]:
    """About 30 real images: one per subject, and no subject in two splits (a clean baseline)."""
    picked, used = {}, set()
    for split, count in (("test", 5), ("valid", 5), ("train", 20)):
        rows = _real_rows(source, split)
        header, chosen = rows[0], []
        for row in rows[1:]:
            if len(chosen) < count and _subject(row) not in used:
                used.add(_subject(row))
                chosen.append(row)
        (dest / split).mkdir(parents=True)
        for row in chosen:
            shutil.copyfile(source / split / row[0], dest / split / row[0])
        picked[split] = [header] + chosen
        _write_csv(dest / split / "_classes.csv", picked[split])
    return picked


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_real_slice_lists_exactly_the_three_injected_problems(hair_loss_root, tmp_path, capsys):
    root = tmp_path / "slice"
    rows = _copy_slice(hair_loss_root, root)
    code, baseline = _check_json([root], capsys)
    assert code == 0 and baseline["problems"] == [], baseline["problems"]

    truncated = root / "train" / rows["train"][1][0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 2 // 3])
    rows["valid"][2][1:] = ["0", "1", "1", "0", "0", "0"]
    _write_csv(root / "valid" / "_classes.csv", rows["valid"])
    leaked = rows["train"][3]
    copy_name = "999-Front_jpg.rf.copied.jpg"
    shutil.copyfile(root / "train" / leaked[0], root / "test" / copy_name)
    _write_csv(root / "test" / "_classes.csv", rows["test"] + [[copy_name] + leaked[1:]])

    code, report = _check_json([root], capsys)
    assert code == 1
    new = [f for f in report["findings"] if f["message"] not in baseline["problems"]]
    assert [(f["kind"], f["count"]) for f in new] == [
        ("unreadable", 1), ("label_problems", 1), ("exact_duplicates_across_splits", 1)]
    assert len(report["problems"]) == 3
    assert report["unreadable"][0]["id"] == f"train/{rows['train'][1][0]}"
    assert "truncated" in report["unreadable"][0]["reason"]
    assert report["label_problems"][0]["line"] == 3 and "not one-hot" in report["label_problems"][0]["reason"]
    duplicate = report["exact_duplicates"]["across_splits"][0]
    assert duplicate["ids"] == [f"train/{leaked[0]}", f"test/{copy_name}"]
