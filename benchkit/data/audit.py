"""``benchkit data check``: an audit of a dataset that reports every finding instead of stopping.

The dataset is read through its format (:func:`benchkit.data.reading.read_labels`, the reader ``benchkit run``
uses, so the label rows are validated once, the same way), every image is decoded in full with truncation
treated as an error, and the images are compared by content (sha256) and by a perceptual hash that ignores
90-degree rotations and flips.

Problems (they make a dataset not clean, exit status 1):

- ``unreadable``: missing, empty, undecodable or truncated image files;
- ``label_problems``: what ``benchkit run`` refuses: label rows that are malformed, name an unknown class,
  name a file outside the dataset or an image listed before, label files that are missing or whose
  header lacks classes;
- ``unlabelled_images``: images in the dataset's folders that no row labels (``run`` leaves them out);
- ``exact_duplicates_across_splits`` and ``conflicting_duplicate_labels``: the same bytes in two splits,
  or under two labels;
- ``near_duplicates_across_splits``: pairs within ``phash_threshold`` bits in different splits (exact
  copies are reported only as exact duplicates);
- ``subject_overlap``: one subject in two splits (the format's subjects, e.g. a CSV's subject column, else
  the file-name regex combined with the label);
- ``empty_split``: a split without labelled images;
- ``empty_classes``: a class (CSV column or class folder) with no image in any split; only a note
  when the classes were given (``--classes`` or the YAML's ``data.classes``), as ``benchkit run`` does.

Informational only (listed under ``notes``): duplicates within one split, e.g. Roboflow's rotated
copies inside train, file names the subject regex does not match, the image sizes and modes.
"""

from __future__ import annotations

import re
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from benchkit.config.schema import DEFAULT_SUBJECT_REGEX, DataConfig
from benchkit.data.image_hashes import Facts, dihedral_phash, inspect_all, inspect_arrays, near_duplicate_pairs
from benchkit.data.labels import Entry, LabelTable, describe_problem
from benchkit.data.reading import detect_format, read_labels
from benchkit.data.splits import compile_subject_regex, subject_key
from benchkit.errors import ConfigError

PHASH_THRESHOLD = 6
LISTED = 10
"""Examples listed per finding (the JSON report lists all)."""


def audit_dataset(root: Path, *, format: str | None = None, classes: Sequence[str] | None = None,
                  options: dict | None = None, subject_regex: str = DEFAULT_SUBJECT_REGEX,
                  subject_with_label: bool = True, phash_threshold: int = PHASH_THRESHOLD, workers: int = 2,
                  layout: str | None = None) -> dict:
    """Audit one dataset folder or file (its format detected unless given); see the module docstring."""
    if layout is not None:
        warnings.warn("audit_dataset(layout=...) is deprecated; use format=...", DeprecationWarning, stacklevel=2)
        format = format or layout
    data = DataConfig(format=format or detect_format(root), root=Path(root),
                      classes=list(classes) if classes else None, options=options or {},
                      subject_regex=subject_regex, subject_with_label=subject_with_label)
    return audit_data(data, phash_threshold=phash_threshold, workers=workers)


def audit_data(data: DataConfig, *, phash_threshold: int = PHASH_THRESHOLD, workers: int = 2) -> dict:
    """Audit the dataset a ``data`` section names (its root resolved); the report is JSON-ready data."""
    started = time.perf_counter()
    pattern = compile_subject_regex(data.subject_regex)
    if phash_threshold < 0:
        raise ConfigError(f"phash threshold must be >= 0, got {phash_threshold}")
    table = read_labels(data)
    entries = table.entries
    facts = _facts(entries, workers)

    report: dict = {"dataset": str(data.root), "format": data.format, "layout": data.format,
                    "classes": table.classes}
    report["splits"] = _split_counts(table)
    report["empty_classes"] = [c for c in table.classes
                               if not any(row["class_counts"].get(c) for row in report["splits"].values())]
    report["classes_given"] = bool(data.classes)
    report["unreadable"] = [{"id": e.id, "reason": f.error} for e, f in zip(entries, facts) if f.error]
    report["label_problems"] = table.problems
    report["unlabelled_images"] = table.unlabelled
    report["sizes"] = _tally(f"{f.size[0]}x{f.size[1]}" for f in facts if f.size)
    report["modes"] = _tally(f.mode for f in facts if f.mode)
    report["exact_duplicates"] = _exact_duplicates(entries, facts, table.classes)
    subjects = _subjects(entries, table.classes, pattern, data.subject_with_label)
    report["near_duplicates"] = _near_duplicates(entries, facts, subjects, phash_threshold)
    report["subject_key"], report["subject_overlap"] = _subject_overlap(entries, subjects, table.splits,
                                                                       pattern, data.subject_with_label)
    findings = _findings(report)
    report["findings"] = findings
    report["problems"] = [f["message"] for f in findings]
    report["notes"] = table.notes + _notes(report)
    report["clean"] = not findings
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def _facts(entries: list[Entry], workers: int) -> list[Facts]:
    """Each entry's image facts: files decoded from disk, array rows from memory."""
    files = iter(inspect_all([e.path for e in entries if e.path is not None], workers))
    arrays = iter(inspect_arrays([e.array for e in entries if e.path is None]))
    return [next(files) if e.path is not None else next(arrays) for e in entries]


def _subjects(entries: list[Entry], classes: list[str], pattern: re.Pattern, with_label: bool) -> list:
    """The format's subject of each labelled image, else its file name's (the regex, with the label)."""
    return [None if e.label is None else e.subject if e.subject is not None else
            subject_key(e.id, classes[e.label], pattern, with_label) for e in entries]


def _tally(values) -> dict[str, int]:
    return dict(Counter(values).most_common())


def _split_counts(table: LabelTable) -> dict:
    out = {}
    for split in table.splits:
        levels = [e.label for e in table.entries if e.split == split and e.label is not None]
        counts = Counter(levels)
        out[split] = {"count": len(levels),
                      "class_counts": {c: counts.get(k, 0) for k, c in enumerate(table.classes)}}
    return out


def _exact_duplicates(entries: list[Entry], facts: list[Facts], classes: list[str]) -> dict:
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


def _near_duplicates(entries: list[Entry], facts: list[Facts], subjects: list[str | None],
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


def _group_summary(entries: list[Entry], members: list[int], pairs: list[tuple[int, int, int]]) -> dict:
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


def _subject_overlap(entries: list[Entry], subjects: list[str | None], splits: list[str],
                     pattern: re.Pattern, with_label: bool) -> tuple[dict, dict]:
    unmatched = [e.id for e, s in zip(entries, subjects) if s is None and e.label is not None]
    from_format = any(e.subject is not None for e in entries)
    info = {"regex": pattern.pattern, "with_label": with_label, "unmatched": len(unmatched),
            "unmatched_examples": unmatched[:LISTED], "source": "format" if from_format else "file names"}
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
            row["examples"] = sorted(common, key=_natural)[:LISTED]
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
        + (f", e.g. {describe_problem(bad[0])}" if bad else ""))
    loose = report["unlabelled_images"]
    add("unlabelled_images", len(loose), f"{len(loose)} image(s) without a label"
        + (f", e.g. {loose[0]['reason']}" if loose else ""))
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
    elif key["source"] == "format":
        notes.append("subjects as the dataset names them (e.g. a subject column), not from the file names")
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


