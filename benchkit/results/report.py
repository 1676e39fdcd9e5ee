"""``benchkit report DIR``: one self-contained HTML page about a results folder.

The page holds the leaderboard (each metric with its 95% interval), the experiment plots, the
dataset summary (classes and per-split counts from the run files, plus a ``data_check.json`` or
``audit.json`` audit when the folder has one), every run's plots and resolved config, and the
environment the runs recorded. Images are inlined as base64 PNG and the styles are inline: no file,
network or script is needed to read it. Missing plots are drawn first from the run files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from benchkit.config.schema import EVALUATED_SPLITS
from benchkit.errors import OutputError
from benchkit.io import folder_write_problem, read_json, write_text
from benchkit.results import results_folder, run_folder
from benchkit.results.budget_curves import budget_plot_path, draw_budget_plot, tuning_summary
from benchkit.results.cd_diagram import CD_PREFIX
from benchkit.results.leaderboard import build_leaderboard, grid_columns, metric_of, require_run_results
from benchkit.evaluation.metrics import HIGHER_IS_BETTER
from benchkit.results.plots import try_plots, write_experiment_plots, write_run_plots

AUDIT_FILES = ("data_check.json", "audit.json")
REPORT_METRICS = ("mae", "score_mae", "acc", "qwk", "off1", "f1", "mape")
_LIST_LIMIT = 25
_OPEN_KEYS = ("problems", "findings", "notes")

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#1d2733;padding:0 16px;line-height:1.4}
h1{font-size:26px;margin-bottom:4px}h2{border-bottom:2px solid #1f4e78;padding-bottom:4px;margin-top:34px}
h3{margin-bottom:6px}.muted{color:#5d6b7a;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th{background:#1f4e78;color:#fff;padding:5px 8px;text-align:left;position:sticky;top:0}
td{border-bottom:1px solid #d9e0e7;padding:4px 8px;white-space:nowrap}
tr:nth-child(even) td{background:#f5f8fb}td.best{background:#c6efce!important;font-weight:bold}
td.failed{color:#b00020}.ci{color:#5d6b7a;font-size:11px}
img{max-width:100%;border:1px solid #d9e0e7;margin:6px 0;display:block}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plots img{max-width:640px}.wide img{width:auto;max-width:100%}
pre{background:#f5f8fb;border:1px solid #d9e0e7;padding:8px;font-size:12px;overflow-x:auto;max-height:420px}
details{border:1px solid #d9e0e7;border-radius:4px;margin:6px 0;padding:4px 10px}
summary{cursor:pointer;font-weight:600;padding:3px 0}li{font-size:13px}.scroll{overflow-x:auto}
"""


def write_report(out_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write ``out_dir/report.html`` (or ``output``) and return its path."""
    out_dir = require_run_results(out_dir)
    path = Path(output) if output else results_folder.report_path(out_dir)
    problem = folder_write_problem(path.parent)
    if problem:
        raise OutputError(f"cannot write the report {path}: {problem}"
                          + ("" if output else "; write it elsewhere with --output FILE"))
    saved = results_folder.read_experiment(out_dir)
    experiment, sort_by = saved.content, saved.sort_by
    frame = build_leaderboard(out_dir, sort_by)
    run_dirs = [results_folder.run_dir(out_dir, run_id) for run_id in frame.get("run_id", [])]
    for run_dir, status in zip(run_dirs, frame.get("status", [])):
        if status == "ok" and not (run_dir / run_folder.PLOTS).is_dir():
            try_plots(write_run_plots, run_dir)
    if not results_folder.plots_dir(out_dir).is_dir():
        try_plots(write_experiment_plots, out_dir, frame, sort_by)
    title = saved.name or out_dir.name
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='muted'>{_e(experiment.get('description', ''))}</p>" if experiment.get("description") else "",
        f"<p class='muted'>results folder <code>{_e(out_dir.resolve())}</code> &middot; {len(frame)} run(s), "
        f"{int((frame.get('status') == 'ok').sum()) if len(frame) else 0} finished &middot; "
        f"report written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
        _contents(),
        "<h2 id='leaderboard'>Leaderboard</h2>", _leaderboard_section(frame, sort_by),
        _aggregated_section(out_dir),
        _tuning_section(out_dir),
        "<h2 id='plots'>Experiment plots</h2>", _images(sorted(p for p in results_folder.plots_dir(out_dir).glob("*.png")
                                                              if p != budget_plot_path(out_dir)), "wide"),
        "<h2 id='data'>Dataset</h2>", _dataset_section(out_dir, experiment, frame),
        "<h2 id='runs'>Runs</h2>", _runs_section(run_dirs, frame, sort_by),
        "<h2 id='environment'>Environment</h2>", _environment_section(run_dirs),
        "<h2 id='experiment'>Experiment file</h2>",
        f"<pre>{_e(saved.text or '(no ' + results_folder.EXPERIMENT + ')')}</pre>",
    ]
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}: benchkit report</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(p for p in parts if p) + "\n</body></html>\n")
    write_text(path, page)
    return path


def _contents() -> str:
    links = [("leaderboard", "Leaderboard"), ("plots", "Experiment plots"), ("data", "Dataset"),
             ("runs", "Runs"), ("environment", "Environment"), ("experiment", "Experiment file")]
    return "<p>" + " &middot; ".join(f"<a href='#{a}'>{t}</a>" for a, t in links) + "</p>"


# ---------------------------------------------------------------- sections

def _leaderboard_section(frame: pd.DataFrame, sort_by: str) -> str:
    if frame.empty:
        return "<p>No finished runs yet.</p>"
    note = (f"<p class='muted'>Sorted by <b>{_e(sort_by)}</b>; brackets: 95% bootstrap interval; "
            f"green: best per column.</p>")
    splits = [split for split in ("test", "valid") if any(f"{split}_{m}" in frame for m in REPORT_METRICS)]
    tables = [_metric_table(frame, split) for split in splits]
    if len(tables) > 1:
        tables[1:] = [f"<details><summary>{_e(split)} split</summary>{table}</details>"
                      for split, table in zip(splits[1:], tables[1:])]
    return note + "".join(tables)


def _metric_table(frame: pd.DataFrame, split: str) -> str:
    ident = [c for c in ("run_id", "model", "seed") if c in frame] + grid_columns(frame)
    metrics = [f"{split}_{m}" for m in REPORT_METRICS if f"{split}_{m}" in frame]
    header = "".join(f"<th>{_e(c)}</th>" for c in ident + metrics + ["epochs", "status"])
    best = {col: _best(frame, col) for col in metrics}
    rows = []
    for _, row in frame.iterrows():
        cells = [f"<td>{_e(_fmt(row[c]))}</td>" for c in ident]
        for col in metrics:
            value = row[col]
            cls = " class='best'" if best[col] is not None and value == best[col] else ""
            ci = ""
            if f"{col}_lo" in row and pd.notna(row.get(f"{col}_lo")):
                ci = f" <span class='ci'>[{_fmt(row[f'{col}_lo'])}, {_fmt(row[f'{col}_hi'])}]</span>"
            cells.append(f"<td{cls}>{_e(_fmt(value))}{ci}</td>")
        cells.append(f"<td>{_e(_fmt(row.get('epochs', '')))}</td>")
        status = str(row.get("status", ""))
        error = f": {row.get('error')}" if status != "ok" and pd.notna(row.get("error")) else ""
        cells.append(f"<td class='{'failed' if status != 'ok' else ''}'>{_e(status + error)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><tr>{header}</tr>{''.join(rows)}</table></div>"


def _aggregated_section(out_dir: Path) -> str:
    path = results_folder.summary_path(out_dir, "aggregated")
    if not path.is_file():
        return ""
    frame = pd.read_csv(path)
    tests = [c for c in ("delta", "p_holm", "significance", "best_group") if c in frame]
    keep = [c for c in frame if c in ("config", "runs", "seeds") or
            (c.endswith("_mean") and metric_of(c[:-5]) in REPORT_METRICS and c.startswith("test_"))] + tests
    note = ("mean over runs of each configuration (95% t-interval in brackets)"
            + ("; <b>significance</b>: paired bootstrap against the reference, Holm-adjusted (<b>p_holm</b>)"
               if "p_holm" in tests else "")
            + ("; <b>best_group</b>: not significantly worse than the best (Holm-adjusted paired bootstrap)"
               if "best_group" in tests else ""))
    return (f"<h3>Across seeds and folds</h3><p class='muted'>{note}</p>"
            + _table(frame, keep, interval_of=lambda c: c[:-5]) + _ranks_section(out_dir))


def _tuning_section(out_dir: Path) -> str:
    summary = tuning_summary(out_dir)
    if summary is None:
        return ""
    summary = summary.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)  # learning rates need digits
    if not budget_plot_path(out_dir).is_file():
        draw_budget_plot(out_dir)
    return ("<h2 id='tuning'>Tuning</h2><p class='muted'>Each configuration had the same budget of trials on the "
            "validation split (the test split is not read in a trial); its runs use the best parameters found. "
            "The curves show the expected best validation score after k trials (Dodge et al. 2019).</p>"
            + _table(summary, list(summary)) + _images([p for p in [budget_plot_path(out_dir)] if p.is_file()]))


def _ranks_section(out_dir: Path) -> str:
    path = results_folder.summary_path(out_dir, "ranks")
    if not path.is_file():
        return ""
    frame = pd.read_csv(path)
    return ("<h3>Average ranks over folds and seeds</h3><p class='muted'>Friedman test over the configurations, "
            "Nemenyi post hoc: configurations whose average ranks differ by less than the critical difference "
            "are joined by a bar in the diagram.</p>" + _table(frame, list(frame))
            + _images(sorted(results_folder.plots_dir(out_dir).glob(f"{CD_PREFIX}*.png")), "wide"))


def _dataset_section(out_dir: Path, experiment: dict, frame: pd.DataFrame) -> str:
    data = experiment.get("data") or {}
    facts = {k: data.get(k) for k in ("format", "root", "classes", "image_size", "split", "folds",
                                      "max_per_split") if data.get(k) is not None}
    if facts.get("split") in ("official", None):
        facts.pop("folds", None)
    parts = [_key_values(facts)] if facts else []
    finished = [r for r, s in zip(frame.get("run_id", []), frame.get("status", [])) if s == "ok"]
    if finished:
        run_dir = run_folder.run_dir_of(out_dir, str(finished[0]))
        classes = run_folder.read_info(run_dir).get("classes")
        counts = {}
        for split in EVALUATED_SPLITS:
            predictions = run_folder.read_predictions(run_dir, split)
            if predictions is not None:
                counts[split] = predictions["target"].value_counts().sort_index()
        if counts:
            levels = sorted(set().union(*(c.index for c in counts.values())))
            names = [classes[k] if classes and k < len(classes) else str(k) for k in levels]
            table = pd.DataFrame({split: [int(c.get(k, 0)) for k in levels] for split, c in counts.items()},
                                 index=names)
            table.loc["total"] = table.sum()
            parts.append(f"<p class='muted'>Images per level in the evaluated splits (run {_e(finished[0])})</p>"
                         + _table(table.reset_index(names="level"), list(table.reset_index(names="level"))))
    for name in AUDIT_FILES:
        path = out_dir / name
        if path.is_file():
            try:
                audit = read_json(path)
            except ValueError as exc:
                parts.append(f"<p class='failed'>{_e(name)}: unreadable ({_e(exc)})</p>")
                continue
            parts.append(f"<h3>Audit ({_e(name)})</h3>" + _render_json(audit))
    return "\n".join(parts) or "<p>No dataset information in this folder.</p>"


def _runs_section(run_dirs: list[Path], frame: pd.DataFrame, sort_by: str) -> str:
    blocks = []
    for run_dir, (_, row) in zip(run_dirs, frame.iterrows()):
        status = str(row.get("status", ""))
        value = row.get(sort_by)
        summary = f"{run_dir.name} &middot; {_e(status)}" + (
            f" &middot; {_e(sort_by)} {_e(_fmt(value))}" if pd.notna(value) and value != "" else "")
        body = []
        if status != "ok" and pd.notna(row.get("error")):
            body.append(f"<p class='failed'>{_e(row.get('error'))}</p>")
        body.append(_images(sorted((run_dir / run_folder.PLOTS).glob("*.png"))))
        config = _read_text(run_dir / run_folder.CONFIG)
        if config:
            body.append(f"<details><summary>config.yaml</summary><pre>{_e(config)}</pre></details>")
        opened = " open" if not blocks and status == "ok" else ""
        blocks.append(f"<details{opened}><summary>{summary}</summary>{''.join(body)}</details>")
    return "\n".join(blocks) or "<p>No runs.</p>"


def _environment_section(run_dirs: list[Path]) -> str:
    environments: dict[str, list[str]] = {}
    for run_dir in run_dirs:
        path = run_dir / run_folder.DETAILS
        if path.is_file():
            try:
                env = read_json(path).get("environment")
            except ValueError:
                continue
            if env:
                environments.setdefault(json.dumps(env, sort_keys=True), []).append(run_dir.name)
    if not environments:
        return "<p>No run recorded its environment.</p>"
    parts = []
    for text, runs in environments.items():
        label = "all runs" if len(environments) == 1 else f"{len(runs)} run(s): {', '.join(runs[:5])}"
        parts.append(f"<p class='muted'>{_e(label)}</p>" + _key_values(json.loads(text)))
    return "\n".join(parts)


# ---------------------------------------------------------------- HTML helpers

def _images(paths: list[Path], css_class: str = "plots") -> str:
    if not paths:
        return "<p class='muted'>(no plots)</p>"
    tags = [f"<img alt='{_e(p.stem)}' title='{_e(p.name)}' src='data:image/png;base64,"
            f"{base64.b64encode(p.read_bytes()).decode('ascii')}'>" for p in paths]
    return f"<div class='{css_class}'>" + "".join(tags) + "</div>"


def _table(frame: pd.DataFrame, columns: list[str], interval_of=None) -> str:
    header = "".join(f"<th>{_e(c)}</th>" for c in columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            text = _e(_fmt(row[c]))
            base = interval_of(c) if interval_of and str(c).endswith("_mean") else None
            if base and f"{base}_lo" in row and pd.notna(row[f"{base}_lo"]):
                text += f" <span class='ci'>[{_e(_fmt(row[f'{base}_lo']))}, {_e(_fmt(row[f'{base}_hi']))}]</span>"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><tr>{header}</tr>{''.join(rows)}</table></div>"


def _key_values(mapping: dict) -> str:
    rows = "".join(f"<tr><td><b>{_e(k)}</b></td><td>{_e(_fmt(v))}</td></tr>" for k, v in mapping.items())
    return f"<table>{rows}</table>"


def _render_json(value: Any, depth: int = 0) -> str:
    """Any JSON document as nested tables and lists (long lists cut, with a count)."""
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in value.items() if isinstance(v, (dict, list))}
        first = [k for k in _OPEN_KEYS if k in nested and depth == 0]
        out = _key_values(scalars) if scalars else ""
        for key in first + [k for k in nested if k not in first]:
            inner = _render_json(nested[key], depth + 1)
            out += f"<details{' open' if key in first else ''}><summary>{_e(key)}</summary>{inner}</details>"
        return out or "<p class='muted'>(empty)</p>"
    if isinstance(value, list):
        more = f"<p class='muted'>... {len(value) - _LIST_LIMIT} more</p>" if len(value) > _LIST_LIMIT else ""
        shown = value[:_LIST_LIMIT]
        if shown and all(isinstance(v, dict) for v in shown):
            columns = list(dict.fromkeys(k for v in shown for k in v))
            frame = pd.DataFrame([{k: _compact(v.get(k)) for k in columns} for v in shown])
            return _table(frame, columns) + more
        return "<ul>" + "".join(f"<li>{_e(_compact(v))}</li>" for v in shown) + "</ul>" + more if shown else \
            "<p class='muted'>(none)</p>"
    return f"<p>{_e(_fmt(value))}</p>"


def _compact(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else ("" if value is None else str(value))


def _best(frame: pd.DataFrame, column: str):
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.notna().sum() < 2:
        return None
    return values.max() if HIGHER_IS_BETTER.get(metric_of(column), True) else values.min()


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None
