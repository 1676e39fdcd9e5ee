"""The ``benchkit clean`` command: remove the resume state of a results folder's finished runs.

:mod:`benchkit.cli.main` adds it with :func:`add_clean_command`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_clean_command(subparsers) -> argparse.ArgumentParser:
    """Add ``clean`` to an argparse subparsers object; returns its parser."""
    clean = subparsers.add_parser(
        "clean", help="remove the resume state (last.pt) of finished runs, keeping weights and results",
        description="Remove the resume state (optimizer, scheduler, scaler, EMA copy, RNG state: last.pt) of the "
                    "finished runs of a results folder, and say how many bytes that freed. Their best weights, "
                    "predictions, metrics, history and config stay, so leaderboards, load_results, predict and "
                    "export work as before. Failed or interrupted runs keep theirs, to resume; a run another "
                    "process holds is left alone.")
    clean.add_argument("results", type=Path, help="results folder (the --out of benchkit run)")
    clean.add_argument("--dry-run", action="store_true", help="say what would be freed; remove nothing")
    clean.add_argument("--json", action="store_true", help="print one JSON document")
    clean.set_defaults(func=cmd_clean)
    return clean


def cmd_clean(args) -> int:
    from benchkit.progress import console
    from benchkit.results.clean import clean_results
    report = clean_results(args.results, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"results": str(args.results), "dry_run": args.dry_run, **report.as_dict()}, indent=2))
        return 0
    verb = "would free" if args.dry_run else "freed"
    console.print(f"{args.results}: {verb} {report.freed_bytes / 1e6:.1f} MB ({report.freed_bytes} bytes), the "
                  f"resume state of {len(report.cleaned)} finished run(s)")
    if report.unfinished:
        console.print(f"{len(report.unfinished)} unfinished or failed run(s) keep theirs, to resume: "
                      f"{', '.join(report.unfinished)}")
    if report.busy:
        console.print(f"{len(report.busy)} run(s) held by another process, left alone: {', '.join(report.busy)}")
    return 0
