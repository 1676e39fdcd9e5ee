"""The ``benchkit data`` commands: ``check`` (audit a dataset) and ``fetch`` (download one safely).

:mod:`benchkit.cli.main` adds them with :func:`add_data_commands`. Exit status of ``check``: 0 clean,
1 problems found, 2 the dataset could not be read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path



def add_data_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``data check`` and ``data fetch`` to an argparse subparsers object; returns the ``data`` parser."""
    from benchkit.data.audit import PHASH_THRESHOLD
    from benchkit.data.fetch import KNOWN_DATASETS

    data = subparsers.add_parser("data", help="check or fetch datasets",
                                 description="Check a dataset for leaks and broken files, or fetch one.")
    commands = data.add_subparsers(dest="data_command", metavar="{check,fetch}", required=True)

    check = commands.add_parser(
        "check", help="audit a dataset: counts, broken files, duplicates, subject overlap",
        description="Audit a dataset folder (or the data: section of an experiment YAML). Problems: "
                    "unreadable files, bad label rows, exact or near duplicates across splits, subjects "
                    "in more than one split. Exit 0 clean, 1 problems, 2 unreadable dataset.")
    check.add_argument("dataset", type=Path, help="dataset folder or experiment YAML")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    check.add_argument("--layout", choices=("roboflow_csv", "imagefolder"), default=None,
                       help="folder layout (default: roboflow_csv when _classes.csv files exist)")
    check.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                       help="class names in level order (default: CSV header order, or sorted folder names)")
    check.add_argument("--subject-regex", default=None,
                       help=r"regex with a named group 'subject' over the file name "
                            r"(default ^(?P<subject>\d+))")
    check.add_argument("--subject-with-label", action=argparse.BooleanOptionalAction, default=None,
                       help="combine the subject with the label "
                            "(default: yes; hair-loss numbers restart per level)")
    check.add_argument("--phash-threshold", type=int, default=PHASH_THRESHOLD,
                       help=f"near-duplicate threshold in bits of 64 (default {PHASH_THRESHOLD})")
    check.set_defaults(func=run_check)

    fetch = commands.add_parser(
        "fetch", help="download a dataset archive, verify it, extract it in one step",
        description="Download a dataset (Roboflow export with $ROBOFLOW_API_KEY, or --url of a zip), verify "
                    "checksums and extract it; an interrupted fetch leaves nothing at the destination.")
    fetch.add_argument("name", help=f"dataset name (known: {', '.join(KNOWN_DATASETS)})")
    fetch.add_argument("--dest", type=Path, default=None, help="target folder (default: data/<name>)")
    fetch.add_argument("--url", default=None, help="zip archive URL (or a Roboflow export API URL)")
    fetch.add_argument("--sha256", default=None, help="expected sha256 of the archive")
    fetch.add_argument("--force", action="store_true",
                       help="fetch again even when the destination is complete")
    fetch.add_argument("--timeout", type=float, default=30, help="network timeout in seconds (default 30)")
    fetch.set_defaults(func=run_fetch)
    return data


def run_check(args: argparse.Namespace) -> int:
    """Audit the dataset the arguments name; 0 when clean, 1 when problems were found."""
    from benchkit.data.audit import audit_dataset, resolve_target
    from benchkit.data.audit_report import print_report

    classes = [c.strip() for item in args.classes or [] for c in item.split(",") if c.strip()] or None
    target = resolve_target(args.dataset, layout=args.layout, classes=classes,
                            subject_regex=args.subject_regex, subject_with_label=args.subject_with_label)
    if target.synthetic:
        message = f"{args.dataset}: data.format is synthetic; images are drawn in memory, nothing to check"
        print(json.dumps({"dataset": str(args.dataset), "synthetic": True, "clean": True}) if args.json
              else message)
        return 0
    report = audit_dataset(target.root, layout=target.layout, classes=target.classes,
                           subject_regex=target.subject_regex, subject_with_label=target.subject_with_label,
                           phash_threshold=args.phash_threshold)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["clean"] else 1


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch the named dataset; 0 on success (errors raise and map to their exit status)."""
    from benchkit.data.fetch import fetch_dataset

    dest = args.dest if args.dest is not None else Path("data") / args.name
    fetch_dataset(args.name, dest, url=args.url, sha256=args.sha256, timeout=args.timeout, force=args.force)
    return 0
