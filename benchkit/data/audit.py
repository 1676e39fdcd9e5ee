"""``benchkit data check``: an audit of a dataset folder that reports every finding instead of stopping.

Labels are read tolerantly here (the strict readers in :mod:`benchkit.data.datasets` raise on the first bad
CSV), every image is decoded in full with truncation treated as an error, and the images are compared
by content (sha256) and by a perceptual hash that ignores 90-degree rotations and flips.

Problems (they make a dataset not clean, exit status 1):

- ``unreadable``: missing, empty, undecodable or truncated image files;
- ``label_problems``: label rows that are malformed, not one-hot or name an unknown class, CSV headers
  lacking classes, images without a label (row or class folder);
- ``exact_duplicates_across_splits`` and ``conflicting_duplicate_labels``: the same bytes in two splits,
  or under two labels;
- ``near_duplicates_across_splits``: pairs within ``phash_threshold`` bits in different splits (exact
  copies are reported only as exact duplicates);
- ``subject_overlap``: one subject (file-name regex, combined with the label) in two splits;
- ``empty_split``: a split without labelled images;
- ``empty_classes``: a class (CSV column or class folder) with no image in any split; only a note
  when the classes were given (``--classes`` or the YAML's ``data.classes``), as ``benchkit run`` does.

Informational only (listed under ``notes``): duplicates within one split, e.g. Roboflow's rotated
copies inside train, file names the subject regex does not match, the image sizes and modes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from PIL import Image, ImageFile
from scipy.fft import dctn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from benchkit.data.datasets import IMAGE_SUFFIXES, SPLITS
from benchkit.data.rgb import to_rgb
from benchkit.errors import ConfigError, DataError
from benchkit.data.splits import DEFAULT_SUBJECT_REGEX, compile_subject_regex, subject_key

LAYOUTS = ("roboflow_csv", "imagefolder")
PHASH_THRESHOLD = 6
_HASH_SIDE = 32
_LOW_FREQ = 8
_LISTED = 10


@dataclass
class CheckTarget:
    """What to audit: a folder and how to read it (from the command line or an experiment's ``data:``)."""

    root: Path | None
    layout: str | None = None
    classes: list[str] | None = None
    subject_regex: str = DEFAULT_SUBJECT_REGEX
    subject_with_label: bool = True
    synthetic: bool = False


@dataclass
class _Entry:
    split: str
    id: str
    path: Path
    label: int | None


@dataclass
class _Facts:
    sha256: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None
    thumb: np.ndarray | None = None


@dataclass
class _Labels:
    classes: list[str]
    entries: list[_Entry] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)


def resolve_target(path: Path, *, layout: str | None = None, classes: Sequence[str] | None = None,
                   subject_regex: str | None = None, subject_with_label: bool | None = None) -> CheckTarget:
    """A folder as given, or the ``data:`` section of an experiment YAML; explicit options win."""
    path = Path(path)
    target = CheckTarget(root=path)
    if path.is_file() and path.suffix.lower() in {".yaml", ".yml"}:
        target = _target_from_yaml(path)
    if layout is not None:
        target.layout = layout
    if classes:
        target.classes = list(classes)
    if subject_regex is not None:
        target.subject_regex = subject_regex
    if subject_with_label is not None:
        target.subject_with_label = subject_with_label
    if target.layout is not None and target.layout not in LAYOUTS + ("synthetic",):
        raise ConfigError(f"layout {target.layout!r} is not one of {', '.join(LAYOUTS)}")
    return target


def _target_from_yaml(path: Path) -> CheckTarget:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: no 'data:' mapping (expected data.root, data.format, data.classes)")
    fmt = data.get("format")
    if fmt == "synthetic":
        return CheckTarget(root=None, layout="synthetic", synthetic=True)
    if data.get("root") is None:
        raise ConfigError(f"{path}: data.root is missing")
    root = Path(str(data["root"])).expanduser()
    if not root.is_absolute():
        beside = Path(os.path.normpath(path.parent / root))
        root = beside if beside.exists() or not root.exists() else root.resolve()
    regex = data.get("subject_regex", data.get("subject_key", DEFAULT_SUBJECT_REGEX))
    return CheckTarget(root=root, layout=fmt, classes=data.get("classes"), subject_regex=str(regex),
                       subject_with_label=bool(data.get("subject_with_label", True)))


def audit_dataset(root: Path, *, layout: str | None = None, classes: Sequence[str] | None = None,
                  subject_regex: str = DEFAULT_SUBJECT_REGEX, subject_with_label: bool = True,
                  phash_threshold: int = PHASH_THRESHOLD, workers: int = 2) -> dict:
    """Audit one dataset folder; the report is plain JSON-ready data (see the module docstring)."""
    started = time.perf_counter()
    root = Path(root)
    pattern = compile_subject_regex(subject_regex)
    if phash_threshold < 0:
        raise ConfigError(f"phash threshold must be >= 0, got {phash_threshold}")
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (see data/README.md for how to get the data)")
    layout = layout or detect_layout(root)
    reader = _read_roboflow_labels if layout == "roboflow_csv" else _read_imagefolder_labels
    labels = reader(root, list(classes) if classes else None)
    if not labels.splits:
        raise DataError(f"no splits ({', '.join(SPLITS)}) under {root}")
    entries = labels.entries
    facts = _inspect_all([e.path for e in entries], workers)

    report: dict = {"dataset": str(root), "layout": layout, "classes": labels.classes}
    report["splits"] = _split_counts(labels)
    report["empty_classes"] = [c for c in labels.classes
                               if not any(row["class_counts"].get(c) for row in report["splits"].values())]
    report["classes_given"] = bool(classes)
    report["unreadable"] = [{"id": e.id, "reason": f.error} for e, f in zip(entries, facts) if f.error]
    report["label_problems"] = labels.problems
    report["sizes"] = _tally(f"{f.size[0]}x{f.size[1]}" for f in facts if f.size)
    report["modes"] = _tally(f.mode for f in facts if f.mode)
    report["exact_duplicates"] = _exact_duplicates(entries, facts, labels.classes)
    subjects = [subject_key(e.id, labels.classes[e.label], pattern, subject_with_label)
                if e.label is not None else None for e in entries]
    report["near_duplicates"] = _near_duplicates(entries, facts, subjects, phash_threshold)
    report["subject_key"], report["subject_overlap"] = _subject_overlap(entries, subjects, labels.splits,
                                                                       pattern, subject_with_label)
    findings = _findings(report)
    report["findings"] = findings
    report["problems"] = [f["message"] for f in findings]
    report["notes"] = _notes(report)
    report["clean"] = not findings
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def detect_layout(root: Path) -> str:
    """``roboflow_csv`` when a split has ``_classes.csv``, else ``imagefolder``; DataError without splits."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (see data/README.md for how to get the data)")
    if any((root / s / "_classes.csv").is_file() for s in SPLITS):
        return "roboflow_csv"
    if any((root / s).is_dir() for s in SPLITS):
        return "imagefolder"
    raise DataError(f"no splits ({', '.join(SPLITS)}) under {root}")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _read_roboflow_labels(root: Path, classes: list[str] | None) -> _Labels:
    out = _Labels(classes=list(classes or []))
    for split in SPLITS:
        split_dir = root / split
        csv_path = split_dir / "_classes.csv"
        if not csv_path.is_file():
            if split_dir.is_dir():
                out.problems.append(_problem(split, f"{split}/", None, "split folder has no _classes.csv"))
            continue
        out.splits.append(split)
        listed = _read_classes_rows(csv_path, split, classes is None and not out.classes, out)
        for path in sorted(p for p in split_dir.iterdir() if _is_image(p) and p.name not in listed):
            out.problems.append(_problem(split, f"{split}/_classes.csv", None,
                                         f"image {path.name} has no label row"))
            out.entries.append(_Entry(split, f"{split}/{path.name}", path, None))
    return out


def _read_classes_rows(csv_path: Path, split: str, header_defines_classes: bool, out: _Labels) -> set[str]:
    where = f"{split}/_classes.csv"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        out.problems.append(_problem(split, where, None, f"cannot be read: {exc}"))
        return set()
    if not rows or not rows[0] or rows[0][0].strip().lower() != "filename":
        out.problems.append(_problem(split, where, 1, "first row must be a header 'filename, <class>, ...'"))
        return set()
    columns = [c.strip() for c in rows[0][1:]]
    if header_defines_classes:
        out.classes = list(columns)
    missing = [c for c in out.classes if c not in columns]
    if missing:
        out.problems.append(_problem(split, where, 1, f"header lacks class column(s) {missing}"))
    column_class = [out.classes.index(c) if c in out.classes else None for c in columns]
    listed: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        name = row[0].strip()
        label, reason = _row_label(row, columns, column_class)
        if name in listed:
            reason = f"second row for {name}"
        if reason:
            out.problems.append(_problem(split, where, line, reason, f"{split}/{name}"))
        if name in listed:
            continue
        listed.add(name)
        out.entries.append(_Entry(split, f"{split}/{name}", csv_path.parent / name, label))
    return listed


def _row_label(row: list[str], columns: list[str],
               column_class: list[int | None]) -> tuple[int | None, str | None]:
    if len(row) != len(columns) + 1:
        return None, f"{len(row)} fields, expected {len(columns) + 1}"
    try:
        values = [float(cell) for cell in row[1:]]
    except ValueError:
        return None, f"non-numeric label cells {[c.strip() for c in row[1:]]}"
    if sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
        return None, f"not one-hot {[int(v) if v.is_integer() else v for v in values]}"
    hot = values.index(1.0)
    if column_class[hot] is None:
        return None, f"names unknown class {columns[hot]!r}"
    return column_class[hot], None


def _read_imagefolder_labels(root: Path, classes: list[str] | None) -> _Labels:
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if classes is None:
        classes = sorted({d.name for s in split_dirs for d in s.iterdir() if d.is_dir()})
    out = _Labels(classes=list(classes), splits=[d.name for d in split_dirs])
    for split_dir in split_dirs:
        split = split_dir.name
        for path in sorted(split_dir.iterdir()):
            if _is_image(path):
                out.problems.append(_problem(split, f"{split}/", None,
                                             f"image {path.name} lies outside the class folders"))
                out.entries.append(_Entry(split, f"{split}/{path.name}", path, None))
            elif path.is_dir():
                label = classes.index(path.name) if path.name in classes else None
                images = sorted(p for p in path.iterdir() if _is_image(p))
                for image in images:
                    rel = f"{split}/{path.name}/{image.name}"
                    if label is None:
                        out.problems.append(_problem(split, f"{split}/{path.name}/", None,
                                                     f"folder {path.name!r} is not a known class", rel))
                    out.entries.append(_Entry(split, rel, image, label))
    return out


def _problem(split: str, where: str, line: int | None, reason: str, image_id: str | None = None) -> dict:
    return {"split": split, "where": where, "line": line, "id": image_id, "reason": reason}


@contextmanager
def _strict_decoding():
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _inspect_all(paths: list[Path], workers: int) -> list[_Facts]:
    seen: dict[Path, _Facts] = {}
    unique = list(dict.fromkeys(paths))
    with _strict_decoding(), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, facts in zip(unique, pool.map(_inspect, unique)):
            seen[path] = facts
    return [seen[p] for p in paths]


def _inspect(path: Path) -> _Facts:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _Facts(error="missing file")
    except OSError as exc:
        return _Facts(error=f"cannot be read ({exc})")
    if not data:
        return _Facts(error="empty file")
    facts = _Facts(sha256=hashlib.sha256(data).hexdigest())
    try:
        with Image.open(io.BytesIO(data)) as img:
            facts.size, facts.mode = img.size, img.mode
            img.load()
        facts.thumb = hash_thumbnail(Image.open(io.BytesIO(data)))
    except Exception as exc:  # PIL raises several types for corrupt or truncated data
        facts.error = f"cannot be decoded ({type(exc).__name__}: {exc})"
    return facts


def hash_thumbnail(img: Image.Image) -> np.ndarray:
    """The 32x32 grayscale array the perceptual hash is computed from (JPEGs decoded at 1/8 scale)."""
    with img:
        img.draft("L", (2 * _HASH_SIDE, 2 * _HASH_SIDE))
        small = to_rgb(img).convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def dihedral_phash(thumbs: np.ndarray) -> np.ndarray:
    """64-bit DCT pHashes of the 8 rotations/flips of each thumbnail: (N, 32, 32) -> (N, 8) uint64.

    Per transform: unnormalised 2-D DCT-II (as the imagehash package computes it), the 8x8 lowest
    frequencies, a bit set where a coefficient exceeds their median (the classic pHash). Transform 0
    is the image itself.
    """
    thumbs = np.asarray(thumbs, dtype=np.float64)
    if thumbs.ndim == 2:
        thumbs = thumbs[None]
    variants = []
    for quarter_turns in range(4):
        turned = np.rot90(thumbs, quarter_turns, axes=(-2, -1))
        variants += [turned, turned[..., ::-1]]
    stack = np.stack(variants, axis=1)
    low = dctn(stack, type=2, axes=(-2, -1))[..., :_LOW_FREQ, :_LOW_FREQ]
    low = low.reshape(*low.shape[:2], _LOW_FREQ * _LOW_FREQ)
    bits = low > np.median(low, axis=-1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return np.bitwise_or.reduce(np.where(bits, weights, np.uint64(0)), axis=-1)


def near_duplicate_pairs(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose rotation/flip-invariant Hamming distance is ``<= threshold``.

    The distance of A and B is the smallest Hamming distance between any transform of one and the
    other as given, taken both ways round. Returns (i, j, distance) arrays.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found_i, found_j, found_d = [], [], []
    block = max(1, 2_000_000 // max(n, 1))
    plain = hashes[:, 0]
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        one_way = _popcount(hashes[rows, :, None] ^ plain[None, None, :]).min(axis=1)
        other_way = _popcount(hashes[None, :, :] ^ plain[rows, None, None]).min(axis=2)
        dist = np.minimum(one_way, other_way)
        i, j = np.nonzero(dist <= threshold)
        i += start
        keep = j > i
        found_i.append(i[keep])
        found_j.append(j[keep])
        found_d.append(dist[i[keep] - start, j[keep]])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d).astype(np.int64)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = words[..., None].view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint8)


def _tally(values) -> dict[str, int]:
    return dict(Counter(values).most_common())


def _split_counts(labels: _Labels) -> dict:
    out = {}
    for split in labels.splits:
        levels = [e.label for e in labels.entries if e.split == split and e.label is not None]
        counts = Counter(levels)
        out[split] = {"count": len(levels),
                      "class_counts": {c: counts.get(k, 0) for k, c in enumerate(labels.classes)}}
    return out


def _exact_duplicates(entries: list[_Entry], facts: list[_Facts], classes: list[str]) -> dict:
    by_hash: dict[str, list[int]] = defaultdict(list)
    for index, f in enumerate(facts):
        if f.sha256:
            by_hash[f.sha256].append(index)
    within, across = [], []
    for sha, members in sorted(by_hash.items(), key=lambda kv: entries[kv[1][0]].id):
        if len(members) < 2:
            continue
        names = {classes[entries[m].label] for m in members if entries[m].label is not None}
        group = {"sha256": sha, "ids": [entries[m].id for m in members],
                 "splits": sorted({entries[m].split for m in members}), "labels_differ": len(names) > 1}
        (across if len(group["splits"]) > 1 else within).append(group)
    return {"across_splits": across, "within_splits": within}


def _near_duplicates(entries: list[_Entry], facts: list[_Facts], subjects: list[str | None],
                     threshold: int) -> dict:
    hashed = [i for i, f in enumerate(facts) if f.thumb is not None]
    report = {"threshold": threshold, "hash": "DCT pHash 64 bit, min over 8 rotations/flips",
              "across_splits": [], "within_splits": {}}
    if len(hashed) < 2:
        return report
    hashes = dihedral_phash(np.stack([facts[i].thumb for i in hashed]))
    pi, pj, pd = near_duplicate_pairs(hashes, threshold)
    within: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for a, b, d in zip(pi, pj, pd):
        ia, ib = hashed[a], hashed[b]
        if entries[ia].split == entries[ib].split:
            within[entries[ia].split].append((ia, ib, int(d)))
            continue
        if facts[ia].sha256 == facts[ib].sha256:
            continue
        same = None if subjects[ia] is None or subjects[ib] is None else subjects[ia] == subjects[ib]
        report["across_splits"].append({"a": entries[ia].id, "b": entries[ib].id, "distance": int(d),
                                        "same_subject": same})
    report["across_splits"].sort(key=lambda p: (p["a"], p["b"]))
    split_order = list(dict.fromkeys(e.split for e in entries))
    for split in split_order:
        members = [i for i in hashed if entries[i].split == split]
        summary = _group_summary(entries, members, within.get(split, []))
        pairs = within.get(split, [])
        summary["identical_pairs"] = sum(facts[a].sha256 == facts[b].sha256 for a, b, _ in pairs)
        report["within_splits"][split] = summary
    return report


def _group_summary(entries: list[_Entry], members: list[int], pairs: list[tuple[int, int, int]]) -> dict:
    position = {m: k for k, m in enumerate(members)}
    rows = [position[a] for a, _, _ in pairs]
    cols = [position[b] for _, b, _ in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(members), len(members)))
    _, component = connected_components(graph, directed=False)
    sizes = Counter(component.tolist())
    partners = Counter()
    for a, b, _ in pairs:
        partners[a] += 1
        partners[b] += 1
    groups = defaultdict(list)
    for m, c in zip(members, component):
        if sizes[c] > 1:
            groups[c].append(entries[m].id)
    return {"images": len(members), "pairs": len(pairs), "groups": len(sizes),
            "group_sizes": {str(k): v for k, v in sorted(Counter(sizes.values()).items())},
            "partners": {str(k): v for k, v in sorted(Counter(partners.get(m, 0) for m in members).items())},
            "duplicate_groups": sorted(groups.values())}


def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _subject_overlap(entries: list[_Entry], subjects: list[str | None], splits: list[str],
                     pattern: re.Pattern, with_label: bool) -> tuple[dict, dict]:
    unmatched = [e.id for e, s in zip(entries, subjects) if s is None and e.label is not None]
    info = {"regex": pattern.pattern, "with_label": with_label, "unmatched": len(unmatched),
            "unmatched_examples": unmatched[:_LISTED]}
    per_split: dict[str, set[str]] = {s: set() for s in splits}
    for e, s in zip(entries, subjects):
        if s is not None:
            per_split[e.split].add(s)
    if not any(per_split.values()):
        return info, {}
    overlap = {}
    for split in splits:
        mine = per_split[split]
        shared = {other: len(mine & per_split[other]) for other in splits if other != split}
        row = {"subjects": len(mine), "overlapping": shared}
        if split != "train" and "train" in per_split:
            common = mine & per_split["train"]
            row["overlapping_train"] = len(common)
            row["examples"] = sorted(common, key=_natural)[:_LISTED]
        overlap[split] = row
    return info, overlap


def _findings(report: dict) -> list[dict]:
    found = []

    def add(kind: str, count: int, message: str) -> None:
        if count:
            found.append({"kind": kind, "count": count, "message": message})

    unreadable = report["unreadable"]
    add("unreadable", len(unreadable), f"{len(unreadable)} unreadable or truncated image file(s)"
        + (f", e.g. {unreadable[0]['id']}: {unreadable[0]['reason']}" if unreadable else ""))
    bad = report["label_problems"]
    add("label_problems", len(bad), f"{len(bad)} label problem(s)"
        + (f", e.g. {bad[0]['where']}" + (f" line {bad[0]['line']}" if bad[0]["line"] else "")
           + f": {bad[0]['reason']}" if bad else ""))
    for split, row in report["splits"].items():
        add("empty_split", int(row["count"] == 0), f"split {split!r} has no labelled images")
    empty = report["empty_classes"]
    add("empty_classes", 0 if report["classes_given"] else len(empty),
        f"class(es) {empty} have no image in any split (an extra column or folder changes the number of "
        f"levels and the regression scale)")
    across = report["exact_duplicates"]["across_splits"]
    add("exact_duplicates_across_splits", len(across),
        f"{len(across)} exact duplicate(s) across splits"
        + (f", e.g. {' = '.join(across[0]['ids'])}" if across else ""))
    groups = report["exact_duplicates"]["across_splits"] + report["exact_duplicates"]["within_splits"]
    conflicting = [g for g in groups if g["labels_differ"]]
    add("conflicting_duplicate_labels", len(conflicting),
        f"{len(conflicting)} exact duplicate group(s) carry different labels"
        + (f", e.g. {' = '.join(conflicting[0]['ids'])}" if conflicting else ""))
    near = report["near_duplicates"]["across_splits"]
    add("near_duplicates_across_splits", len(near),
        f"{len(near)} near-duplicate pair(s) across splits (pHash distance <= "
        f"{report['near_duplicates']['threshold']} under rotation/flip, "
        f"{sum(1 for p in near if p['same_subject'])} of them the same subject)")
    overlap = report["subject_overlap"]
    names = list(overlap)
    for k, split in enumerate(names):
        for earlier in names[:k]:
            shared = overlap[split]["overlapping"][earlier]
            add("subject_overlap", shared, f"subject overlap: {shared} of {overlap[split]['subjects']} "
                f"{split} subjects also in {earlier}")
    return found


def _notes(report: dict) -> list[str]:
    notes = []
    for split, summary in report["near_duplicates"]["within_splits"].items():
        if summary["pairs"]:
            notes.append(f"{split}: {summary['pairs']} near-duplicate pair(s) within the split "
                         f"({summary['identical_pairs']} byte-identical), {summary['groups']} distinct "
                         f"image group(s) among {summary['images']} images "
                         f"(e.g. rotated augmentation copies)")
    within = report["exact_duplicates"]["within_splits"]
    if within:
        notes.append(f"{len(within)} exact duplicate group(s) within a split")
    key = report["subject_key"]
    if not report["subject_overlap"]:
        notes.append(f"subject regex {key['regex']!r} matched no file name: subject overlap not assessed")
    elif key["unmatched"]:
        notes.append(f"subject regex {key['regex']!r} does not match {key['unmatched']} file name(s), "
                     f"e.g. {key['unmatched_examples'][0]}; they are left out of the subject overlap")
    if len(report["sizes"]) > 1:
        notes.append(f"{len(report['sizes'])} different image sizes")
    if report["classes_given"] and report["empty_classes"]:
        notes.append(f"class(es) {report['empty_classes']} of the given classes have no image in any split")
    odd_modes = {m: n for m, n in report["modes"].items() if m != "RGB"}
    if odd_modes:
        notes.append(f"non-RGB images (converted to RGB when loaded; 16-bit, 32-bit and float pixels "
                     f"scaled to 8 bits): {odd_modes}")
    return notes


def print_report(report: dict, console=None) -> None:
    """The report as rich tables: splits, image facts, checks, then the first findings of each kind."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]Dataset[/bold] {report['dataset']} ({report['layout']}, "
                  f"{len(report['classes'])} classes) - checked in {report['seconds']:.1f} s")
    splits = Table(title="Images per split and class")
    splits.add_column("split")
    splits.add_column("images", justify="right")
    for name in report["classes"]:
        splits.add_column(name, justify="right")
    for split, row in report["splits"].items():
        splits.add_row(split, str(row["count"]), *(str(v) for v in row["class_counts"].values()))
    console.print(splits)
    console.print(f"sizes: {_short(report['sizes'])}   modes: {_short(report['modes'])}")

    checks = Table(title="Checks")
    for column in ("check", "result", "verdict"):
        checks.add_column(column)
    kinds = Counter()
    for f in report["findings"]:
        kinds[f["kind"]] += f["count"]
    near = report["near_duplicates"]
    within_pairs = sum(s["pairs"] for s in near["within_splits"].values())
    overlap_text = ", ".join(f"{s}: {r['overlapping_train']}/{r['subjects']}" for s, r in
                             report["subject_overlap"].items() if "overlapping_train" in r) or "not assessed"
    rows = [
        ("unreadable or truncated files", len(report["unreadable"]), "unreadable"),
        ("label problems", len(report["label_problems"]), "label_problems"),
        ("classes without images", ", ".join(report["empty_classes"]) or "0", "empty_classes"),
        ("exact duplicates across splits", len(report["exact_duplicates"]["across_splits"]),
         "exact_duplicates_across_splits"),
        ("exact duplicates within splits", len(report["exact_duplicates"]["within_splits"]), None),
        (f"near-duplicates across splits (<= {near['threshold']} bits)", len(near["across_splits"]),
         "near_duplicates_across_splits"),
        ("near-duplicate pairs within splits", within_pairs, None),
        ("subjects also in train", overlap_text, "subject_overlap"),
    ]
    for label, value, kind in rows:
        verdict = "[red]problem[/red]" if kind and kinds[kind] else ("[green]ok[/green]" if kind else "info")
        checks.add_row(label, str(value), verdict)
    console.print(checks)
    _print_listing(console, "Unreadable files", [f"{u['id']}: {u['reason']}" for u in report["unreadable"]])
    _print_listing(console, "Label problems", [
        f"{p['where']}" + (f" line {p['line']}" if p["line"] else "") + f": {p['reason']}"
        for p in report["label_problems"]])
    _print_listing(console, "Exact duplicates across splits",
                   [" = ".join(g["ids"]) for g in report["exact_duplicates"]["across_splits"]])
    _print_listing(console, "Near-duplicates across splits", [
        f"{p['a']} ~ {p['b']} ({p['distance']} bits{', same subject' if p['same_subject'] else ''})"
        for p in near["across_splits"]])
    if report["subject_overlap"]:
        table = Table(title=f"Subjects (regex {report['subject_key']['regex']!r}, "
                            f"{'with' if report['subject_key']['with_label'] else 'without'} label)")
        for column in ("split", "subjects", "shared with other splits", "examples shared with train"):
            table.add_column(column)
        for split, row in report["subject_overlap"].items():
            shared = ", ".join(f"{k}: {v}" for k, v in row["overlapping"].items())
            table.add_row(split, str(row["subjects"]), shared, ", ".join(row.get("examples", [])[:5]))
        console.print(table)
    for note in report["notes"]:
        console.print(f"[dim]note:[/dim] {note}")
    if report["clean"]:
        console.print("[bold green]clean[/bold green]: no problems found")
    else:
        console.print(f"[bold red]{len(report['problems'])} problem(s):[/bold red]")
        for problem in report["problems"]:
            console.print(f"  - {problem}", markup=False, highlight=False)


def _short(counts: dict[str, int], limit: int = 4) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} x{v}" for k, v in items[:limit])
    return text + (f", ... ({len(items)} kinds)" if len(items) > limit else "") if items else "none"


def _print_listing(console, title: str, lines: list[str]) -> None:
    if not lines:
        return
    console.print(f"[bold]{title}[/bold] ({len(lines)}):")
    for line in lines[:_LISTED]:
        console.print(f"  {line}", markup=False, highlight=False)
    if len(lines) > _LISTED:
        console.print(f"  ... and {len(lines) - _LISTED} more (--json lists all)")
