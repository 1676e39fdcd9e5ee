"""The ``benchkit data`` commands: ``check`` (audit a dataset) and ``fetch`` (download one safely).

:mod:`benchkit.cli.main` adds them with :func:`add_data_commands`. Exit status of ``check``: 0 clean,
1 problems found, 2 the dataset could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

def add_data_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``data check`` and ``data fetch`` to an argparse subparsers object; returns the ``data`` parser."""
    from benchkit.config.schema import DEFAULT_SUBJECT_REGEX
    from benchkit.data.audit import PHASH_THRESHOLD
    from benchkit.data.fetch import KNOWN_DATASETS

    data = subparsers.add_parser("data", help="check or fetch datasets",
                                 description="Check a dataset for leaks and broken files, or fetch one.")
    commands = data.add_subparsers(dest="data_command", metavar="{check,fetch}", required=True)

    check = commands.add_parser(
        "check", help="audit a dataset: counts, broken files, duplicates, subject overlap",
        description="Audit a dataset (a folder or data file, or the data section of an experiment YAML, read as "
                    "'benchkit run' reads it: bases, --set overrides, plugins). Problems: unreadable files, bad "
                    "label rows, images without a label, exact or near duplicates across splits, subjects in more "
                    "than one split. Exit 0 clean, 1 problems, 2 unreadable dataset or experiment.")
    check.add_argument("dataset", type=Path, help="dataset folder or file, or experiment YAML")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    check.add_argument("--format", default=None, metavar="FORMAT",
                       help="dataset format (default: the YAML's data.format, or recognised from the folder: "
                            "roboflow_csv, imagefolder, csv, medmnist_npz, ...; benchkit list formats)")
    check.add_argument("--layout", default=None, help="deprecated: use --format")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the YAML (or of the data section built from the folder), e.g. "
                            "data.root=../shared/data/hair-loss or data.options.label_column=grade (repeatable)")
    check.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                       help="class names in level order (default: the YAML's, the CSV header order, or sorted "
                            "folder names)")
    check.add_argument("--subject-regex", default=None,
                       help=f"regex with a named group 'subject' over the file name (default {DEFAULT_SUBJECT_REGEX})")
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
    """Audit each dataset the arguments name; 0 when all are clean, 1 when problems were found."""
    from benchkit.data.audit import audit_data
    from benchkit.data.audit_report import print_report
    from benchkit.data.reading import format_class, setting

    reports = []
    for data in check_sections(args):
        if setting(format_class(data.format), "drawn"):
            reports.append({"dataset": str(args.dataset), "format": data.format, "drawn": True, "clean": True})
            if not args.json:
                print(f"{args.dataset}: data.format is {data.format}; images are drawn in memory, nothing to check")
            continue
        reports.append(audit_data(data, phash_threshold=args.phash_threshold))
        if not args.json:
            print_report(reports[-1])
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else
                         {"datasets": reports, "clean": all(r["clean"] for r in reports)}, indent=2))
    return 0 if all(r["clean"] for r in reports) else 1


def check_sections(args: argparse.Namespace) -> list:
    """The data sections to audit, roots resolved: an experiment's (one per distinct data section of its runs),
    a data-only YAML's, or one built from a folder or data file; explicit options win."""
    from benchkit.config.files import read_config_file
    from benchkit.config.validation import apply_override, load_data_section, load_experiment, validate_data_section
    from benchkit.data.reading import detect_format, resolve_data_root
    from benchkit.registry import import_plugins

    path, overrides = Path(args.dataset), args.overrides
    fmt = args.format
    if args.layout is not None:
        warnings.warn("benchkit data check --layout is deprecated; use --format", DeprecationWarning)
        print("warning: --layout is deprecated; use --format", file=sys.stderr)
        fmt = fmt or args.layout
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        base = path.parent
        if read_config_file(path).get("models") is not None:
            sections = _experiment_sections(load_experiment(path, overrides), path)
        else:
            data, plugins = load_data_section(path, overrides)
            import_plugins(plugins, base)
            sections = [data]
    else:
        base, raw = Path.cwd(), {"data": {"root": str(path), **({"format": fmt} if fmt else {})}}
        for item in overrides:
            apply_override(raw, item)
        data, plugins = validate_data_section(raw, "data check")
        import_plugins(plugins, base)
        if "format" not in raw["data"]:
            fmt = detect_format(resolve_data_root(data.root, base))
        sections = [data]
    update = {key: value for key, value in (("format", fmt), ("subject_regex", args.subject_regex),
                                            ("subject_with_label", args.subject_with_label),
                                            ("classes", _classes(args.classes))) if value is not None}
    return [_resolved(data.model_copy(update=update), base) for data in sections]


def _experiment_sections(config, path: Path) -> list:
    """The distinct data sections of an experiment's runs (a grid may vary ``data.*``)."""
    from benchkit.config.expansion import expand_runs
    from benchkit.errors import ConfigError
    from benchkit.registry import import_plugins

    import_plugins(config.plugins, path.parent)
    try:
        runs = expand_runs(config, base_dir=path.parent.resolve())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    reading = ("format", "root", "classes", "options", "synthetic", "subject_regex", "subject_with_label")
    unique = {json.dumps(run.data.model_dump(mode="json", include=set(reading)), sort_keys=True): run.data
              for run in runs}
    return list(unique.values())


def _resolved(data, base: Path):
    from benchkit.data.reading import resolve_data_root

    root = resolve_data_root(data.root, base)
    return data.model_copy(update={"root": Path(os.path.normpath(root)) if root is not None else None})


def _classes(items: list[str] | None) -> list[str] | None:
    return [c.strip() for item in items or [] for c in item.split(",") if c.strip()] or None


def format_table(pattern: str = "*"):
    """The registered dataset formats as a rich table (``benchkit list formats``)."""
    from rich.table import Table

    from benchkit.data.reading import setting
    from benchkit.registry import DATASET_FORMATS

    table = Table(title="dataset formats", header_style="bold cyan")
    for column in ("name", "options", "needs", "defined in"):
        table.add_column(column)
    for name in DATASET_FORMATS.names(pattern):
        fmt = DATASET_FORMATS.get(name)
        options = setting(fmt, "Options")
        needs = [what for what, flag in (("root", setting(fmt, "needs_root")),
                                         ("classes", setting(fmt, "needs_classes"))) if flag]
        table.add_row(name, ", ".join(options.model_fields) if options else "", ", ".join(needs), fmt.__module__)
    return table


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch the named dataset; 0 on success (errors raise and map to their exit status)."""
    from benchkit.data.fetch import fetch_dataset

    dest = args.dest if args.dest is not None else Path("data") / args.name
    fetch_dataset(args.name, dest, url=args.url, sha256=args.sha256, timeout=args.timeout, force=args.force)
    return 0
