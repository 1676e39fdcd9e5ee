"""Pictures of results, as PNG files: per run (from its folder's files) and per experiment.

Per run (``runs/<id>/plots/``): confusion matrices per split (counts and row-normalised),
learning curves from ``history.csv``, and the predicted-score distribution per true level. Per
experiment (``<out>/plots/``): the chosen metric per configuration with its 95% interval, a
heatmap of that metric for every pair of grid keys (e.g. freeze x dropout), and with several folds or
seeds the critical-difference diagram of the configurations' average ranks (:mod:`benchkit.results.cd_diagram`).
Everything is drawn from files already on disk (read through :mod:`benchkit.results.run_folder`, never a
checkpoint), so plots can be regenerated at any time (``write_run_plots(run_dir)``).
Figures use matplotlib's object API with the Agg canvas: no display, no global backend change.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchkit.config.schema import EVALUATED_SPLITS
from benchkit.io import atomic_path
from benchkit.results import results_folder, run_folder
from benchkit.results.aggregate import config_labels
from benchkit.results.cd_diagram import write_critical_difference
from benchkit.results.ensembles import is_ensemble
from benchkit.results.leaderboard import grid_columns, metric_of
from benchkit.results.ranks import rankings
from benchkit.evaluation.metrics import HIGHER_IS_BETTER
from benchkit.evaluation.significance import t_interval

_DPI = 100


# ---------------------------------------------------------------- per run

def write_run_plots(run_dir: str | Path) -> list[Path]:
    """Draw every per-run plot that the run folder's files allow; return the PNG paths."""
    run_dir = Path(run_dir)
    out = run_dir / run_folder.PLOTS
    info = run_folder.read_info(run_dir)
    classes = info.get("classes")
    written = []
    for split in EVALUATED_SPLITS:
        pred = run_folder.read_predictions(run_dir, split)
        if pred is None:
            continue
        names = classes or _level_names(pred)
        title = f"{run_dir.name}: {split}"
        written.append(_save(plot_confusion(pred.target.to_numpy(), pred.pred.to_numpy(), names, title),
                             out / f"confusion_{split}.png"))
        written.append(_save(plot_score_distribution(pred.target.to_numpy(), pred.score.to_numpy(), names,
                                                     title), out / f"scores_{split}.png"))
    history = run_folder.read_history(run_dir)
    if history is not None:
        written.append(_save(plot_learning_curves(history, info.get("monitor") or "loss", info.get("best_epoch"),
                                                  run_dir.name), out / "learning_curves.png"))
    return written


def plot_confusion(targets: np.ndarray, preds: np.ndarray, classes: list[str], title: str = "") -> Figure:
    """Two panels: counts and row-normalised rates (rows: true level, columns: predicted level)."""
    k = len(classes)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (np.asarray(targets, dtype=int), np.asarray(preds, dtype=int)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros((k, k)), where=totals > 0)
    fig = Figure(figsize=(5.2 * 2, 4.6), dpi=_DPI)
    fig.subplots_adjust(left=0.1, right=0.96, bottom=0.2, top=0.86, wspace=0.4)
    for ax, matrix, label in zip(fig.subplots(1, 2), (counts, rates), ("count", "fraction of true level")):
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=matrix.max() if label == "count" else 1)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
        for i, j in itertools.product(range(k), range(k)):
            text = f"{matrix[i, j]:d}" if label == "count" else f"{matrix[i, j]:.2f}"
            dark = matrix[i, j] > 0.6 * (matrix.max() if label == "count" else 1)
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        ax.set_xlabel("predicted level")
        ax.set_ylabel("true level")
        ax.set_title("counts" if label == "count" else "row-normalised")
    fig.suptitle(f"confusion matrix {title}".strip())
    return fig


def plot_learning_curves(history: pd.DataFrame, monitor: str = "loss", best_epoch: int | None = None,
                         title: str = "") -> Figure:
    """Train/valid loss per epoch, and the selection metric (``valid_<monitor>``) per epoch."""
    fig = Figure(figsize=(10.4, 4.0), dpi=_DPI)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.13, top=0.86, wspace=0.25)
    loss_ax, metric_ax = fig.subplots(1, 2)
    epochs = history["epoch"]
    for column, label in (("train_loss", "train loss"), ("valid_loss", "valid loss")):
        if column in history:
            loss_ax.plot(epochs, history[column], marker="o", markersize=3, label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    metric = f"valid_{monitor}" if monitor != "loss" and f"valid_{monitor}" in history else "valid_mae"
    if metric in history:
        metric_ax.plot(epochs, history[metric], marker="o", markersize=3, color="tab:green")
        metric_ax.set_ylabel(metric)
    metric_ax.set_xlabel("epoch")
    metric_ax.set_title(f"selection: valid_{monitor}" + ("" if metric == f"valid_{monitor}" else
                                                          f" (shown: {metric})"), fontsize=10)
    if best_epoch is not None and not _isnan(best_epoch):
        for ax in (loss_ax, metric_ax):
            ax.axvline(float(best_epoch), color="grey", linestyle="--", linewidth=1)
        loss_ax.text(float(best_epoch), loss_ax.get_ylim()[1], " best", va="top", fontsize=8, color="grey")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"learning curves {title}".strip())
    return fig


def plot_score_distribution(targets: np.ndarray, scores: np.ndarray, classes: list[str],
                            title: str = "") -> Figure:
    """Predicted continuous scores per true level: violins with the points; dashed lines mark level edges."""
    k = len(classes)
    targets, scores = np.asarray(targets, dtype=int), np.asarray(scores, dtype=float)
    fig = Figure(figsize=(max(5.0, 1.0 * k + 2), 4.2), dpi=_DPI)
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.2, top=0.88)
    ax = fig.subplots()
    groups = [scores[targets == level] for level in range(k)]
    present = [level for level in range(k) if len(groups[level]) > 1]
    if present:
        parts = ax.violinplot([groups[level] for level in present], positions=present, widths=0.8,
                              showmedians=True)
        for body in parts["bodies"]:
            body.set_alpha(0.35)
    rng = np.random.default_rng(0)
    for level in range(k):
        if len(groups[level]):
            jitter = rng.uniform(-0.12, 0.12, len(groups[level]))
            ax.scatter(level + jitter, groups[level], s=9, alpha=0.6, color="tab:blue")
    ax.plot([-0.5, k - 0.5], [-0.5, k - 0.5], color="grey", linewidth=0.8, label="perfect score")
    for edge in np.arange(0.5, k - 1, 1.0):
        ax.axhline(edge, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xticks(range(k), classes, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_xlabel("true level")
    ax.set_ylabel("predicted score (level scale)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"predicted score per true level\n{title}".strip(), fontsize=9)
    return fig


# ---------------------------------------------------------------- per experiment

def write_experiment_plots(out_dir: str | Path, frame: pd.DataFrame | None = None,
                           metric: str | None = None) -> list[Path]:
    """The leaderboard chart, grid heatmaps and critical-difference diagrams of ``metric`` (default: the
    experiment's ``sort_by``)."""
    out_dir = Path(out_dir)
    experiment = results_folder.read_experiment(out_dir)
    if frame is None:
        board = results_folder.leaderboard_path(out_dir)
        frame = pd.read_csv(board) if board.is_file() and board.stat().st_size else pd.DataFrame()
    metric = metric or experiment.sort_by
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    if ok.empty or metric not in ok:
        return []
    grid = _grid_values(experiment.content, ok)
    written = [_save(plot_leaderboard(ok, metric), results_folder.plots_dir(out_dir) / f"leaderboard_{metric}.png")]
    varied = {key: values for key, values in grid.items() if len(values) > 1}
    runs = ok[~ok.apply(is_ensemble, axis=1)]  # a cell averages runs, not runs and their ensembles
    for row_key, col_key in itertools.combinations(varied, 2):
        fig = plot_grid_heatmap(runs, row_key, col_key, metric, varied[row_key], varied[col_key])
        written.append(_save(fig, results_folder.plots_dir(out_dir) / f"heatmap_{row_key}_x_{col_key}_{metric}.png"))
    return written + write_critical_difference(results_folder.plots_dir(out_dir), rankings(ok, config_labels(ok), metric),
                                               metric)


def configuration_summary(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per configuration (:func:`benchkit.results.aggregate.config_labels`): value, 95% interval, runs.

    A single run keeps its bootstrap interval (``<metric>_lo``/``_hi``); several runs (seeds, folds)
    give their mean and the 95% t-interval of that mean.
    """
    rows = []
    for label, group in frame.groupby(config_labels(frame), sort=False):
        values = pd.to_numeric(group[metric], errors="coerce").dropna().to_numpy()
        if not len(values):
            continue
        first = group.iloc[0]
        if len(values) == 1:
            lo, hi = first.get(f"{metric}_lo", np.nan), first.get(f"{metric}_hi", np.nan)
            mean, kind = float(values[0]), "bootstrap"
        else:
            mean, _, lo, hi = t_interval(values)
            kind = "t over runs"
        rows.append({"config": label, "value": mean, "lo": float(lo), "hi": float(hi), "runs": len(values),
                     "interval": kind})
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    ascending = not HIGHER_IS_BETTER.get(metric_of(metric), True)
    return summary.sort_values("value", ascending=ascending, kind="stable").reset_index(drop=True)


def plot_leaderboard(frame: pd.DataFrame, metric: str) -> Figure:
    """Each configuration's ``metric`` with its 95% interval, best at the top."""
    summary = configuration_summary(frame, metric)
    n = len(summary)
    fig = Figure(figsize=(9.0, max(2.4, 1.2 + 0.42 * n)), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    value = summary["value"].to_numpy() if n else np.array([])
    lo = np.where(np.isnan(summary["lo"]), value, summary["lo"]) if n else value
    hi = np.where(np.isnan(summary["hi"]), value, summary["hi"]) if n else value
    ax.errorbar(value, y, xerr=[value - lo, hi - value], fmt="o", color="tab:blue", ecolor="tab:blue",
                capsize=4, markersize=6)
    for yi, v, h in zip(y, value, hi):
        ax.annotate(f"{v:.3f}", (h, yi), xytext=(5, 0), textcoords="offset points", va="center", fontsize=8)
    labels = [f"{c}  (n={r})" if r > 1 else c for c, r in zip(summary.get("config", []), summary.get("runs", []))]
    ax.set_yticks(y, labels, fontsize=8)
    better = "higher" if HIGHER_IS_BETTER.get(metric_of(metric), True) else "lower"
    ax.set_xlabel(f"{metric} ({better} is better; 95% interval: bootstrap for one run, t over seeds/folds)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{metric} per configuration")
    return fig


def plot_grid_heatmap(frame: pd.DataFrame, row_key: str, col_key: str, metric: str,
                      row_values: list | None = None, col_values: list | None = None) -> Figure:
    """Mean ``metric`` over runs for each (row_key, col_key) cell; one panel per model."""
    models = list(dict.fromkeys(frame["model"])) if "model" in frame else [None]
    row_values = [_key(v) for v in (row_values or _ordered(frame[row_key]))]
    col_values = [_key(v) for v in (col_values or _ordered(frame[col_key]))]
    higher = HIGHER_IS_BETTER.get(metric_of(metric), True)
    fig = Figure(figsize=(1.2 + (1.1 * len(col_values) + 1.6) * len(models), 1.6 + 0.7 * len(row_values)),
                 dpi=_DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, model in zip(axes, models):
        part = frame if model is None else frame[frame["model"] == model]
        table = np.full((len(row_values), len(col_values)), np.nan)
        runs = np.zeros_like(table, dtype=int)
        for (r, c), group in part.groupby([part[row_key].map(_key), part[col_key].map(_key)]):
            if r in row_values and c in col_values:
                values = pd.to_numeric(group[metric], errors="coerce").dropna()
                table[row_values.index(r), col_values.index(c)] = values.mean() if len(values) else np.nan
                runs[row_values.index(r), col_values.index(c)] = len(values)
        image = ax.imshow(table, cmap="RdYlGn" if higher else "RdYlGn_r", aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.85, label=metric)
        for i, j in itertools.product(range(len(row_values)), range(len(col_values))):
            if not np.isnan(table[i, j]):
                text = f"{table[i, j]:.3f}" + (f"\n(n={runs[i, j]})" if runs[i, j] > 1 else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(col_values)), col_values)
        ax.set_yticks(range(len(row_values)), row_values)
        ax.set_xlabel(col_key)
        ax.set_ylabel(row_key)
        ax.set_title(str(model) if model is not None else "", fontsize=9)
    fig.suptitle(f"{metric}: {row_key} x {col_key}")
    return fig


def try_plots(draw, *args) -> list[Path]:
    """Call a plot writer; a failure is reported on stderr and never fails a run or an experiment."""
    try:
        return draw(*args)
    except Exception as exc:
        from benchkit.progress import log_console
        log_console.print(f"[yellow]plots not written ({draw.__name__}): {type(exc).__name__}: {exc}[/]")
        return []


# ---------------------------------------------------------------- helpers

def _grid_values(experiment: dict, frame: pd.DataFrame) -> dict[str, list]:
    """Grid columns and their values in YAML order; inferred from the leaderboard without a YAML."""
    from benchkit.config.expansion import grid_column
    grid = experiment.get("grid") or {}
    if grid:
        return {grid_column(k): _yaml_or_frame_values(list(v), frame[grid_column(k)])
                for k, v in grid.items() if grid_column(k) in frame}
    return {c: _ordered(frame[c]) for c in grid_columns(frame)}


def _yaml_or_frame_values(values: list, column: pd.Series) -> list:
    """The YAML's values in their order, or the column's own when it holds other spellings (grid values
    written as text in one and as numbers in the other)."""
    written = {_key(v) for v in column.dropna()}
    return values if written <= {_key(v) for v in values} else _ordered(column)


def _ordered(series: pd.Series) -> list:
    return sorted(series.dropna().unique().tolist(), key=lambda v: (not _is_number(v), _num(v), str(v)))


def _key(value) -> str:
    """A grid value as text, so YAML values match CSV-read ones (``0``, ``0.0`` and ``'0'`` -> ``'0'``)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _num(value) -> float:
    return float(value) if _is_number(value) else 0.0


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _level_names(pred: pd.DataFrame) -> list[str]:
    k = int(max(pred.target.max(), pred.pred.max())) + 1
    probs = [c for c in pred if str(c).startswith("prob_")]
    return [str(i) for i in range(max(k, len(probs)))]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
