"""The audit's report printed for people: the findings first, then the notes and the dataset's facts."""

from __future__ import annotations

from collections import Counter

from benchkit.data.audit import LISTED
from benchkit.data.labels import describe_problem


def print_report(report: dict, console=None) -> None:
    """The report as rich tables: splits, image facts, checks, then the first findings of each kind."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]Dataset[/bold] {report['dataset']} ({report['format']}, "
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
        ("images without a label", len(report["unlabelled_images"]), "unlabelled_images"),
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
    _print_listing(console, "Label problems", [describe_problem(p) for p in report["label_problems"]])
    _print_listing(console, "Images without a label", [u["reason"] for u in report["unlabelled_images"]])
    _print_listing(console, "Exact duplicates across splits",
                   [" = ".join(g["ids"]) for g in report["exact_duplicates"]["across_splits"]])
    _print_listing(console, "Near-duplicates across splits", [
        f"{p['a']} ~ {p['b']} ({p['distance']} bits{', same subject' if p['same_subject'] else ''})"
        for p in near["across_splits"]])
    if report["subject_overlap"]:
        key = report["subject_key"]
        table = Table(title="Subjects (as the dataset names them)" if key["source"] == "format" else
                      f"Subjects (regex {key['regex']!r}, {'with' if key['with_label'] else 'without'} label)")
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
    for line in lines[:LISTED]:
        console.print(f"  {line}", markup=False, highlight=False)
    if len(lines) > LISTED:
        console.print(f"  ... and {len(lines) - LISTED} more (--json lists all)")
