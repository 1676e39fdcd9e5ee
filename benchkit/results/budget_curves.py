"""Budget curves: the expected best validation score after k trials of each configuration's tuning.

Dodge et al. 2019 ("Show your work"): with the n finished trials' values sorted from worst to best,
v_(1) .. v_(n), the expected best of k trials drawn from them (with replacement) is
``sum_i v_(i) * ((i/n)**k - ((i-1)/n)**k)``. Only trials that completed count (a pruned trial's value is
of a shorter training). The table goes to ``budget_curves.csv``, the figure to ``plots/budget_curves.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchkit.io import atomic_path, write_text
from benchkit.results import results_folder

BUDGET_PLOT = "budget_curves.png"


def expected_best(values: list[float] | np.ndarray, k: int, maximize: bool) -> float:
    """Dodge et al.'s expected maximum (or minimum) of ``k`` draws from ``values``."""
    v = np.sort(np.asarray(values, dtype=float))
    if not maximize:
        v = v[::-1]
    n = len(v)
    i = np.arange(1, n + 1)
    weights = (i / n) ** k - ((i - 1) / n) ** k
    return float(np.sum(v * weights))


def budget_curves(trials: pd.DataFrame) -> pd.DataFrame:
    """Per study, the expected best value after k = 1 .. n completed trials (plus their spread)."""
    rows = []
    complete = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    for study, group in complete.groupby("study", sort=False):
        values = group["value"].astype(float).to_numpy()
        maximize = group["direction"].iloc[0] == "maximize"
        for k in range(1, len(values) + 1):
            rows.append({"study": study, "k": k, "expected_best": expected_best(values, k, maximize),
                         "metric": group["metric"].iloc[0], "direction": group["direction"].iloc[0],
                         "completed": len(values), "budget": int(group["budget"].iloc[0])})
    return pd.DataFrame(rows, columns=["study", "k", "expected_best", "metric", "direction", "completed", "budget"])


def write_budget_curves(out_dir: str | Path, trials: pd.DataFrame, plots: bool = True) -> pd.DataFrame:
    """Write the trials table, the budget-curve table and (with ``plots``) its figure; return the curves."""
    write_text(results_folder.trials_table_path(out_dir), trials.to_csv(index=False))
    curves = budget_curves(trials)
    write_text(results_folder.budget_curves_path(out_dir), curves.to_csv(index=False))
    if plots:
        draw_budget_plot(out_dir)
    return curves


def draw_budget_plot(out_dir: str | Path) -> list[Path]:
    """``plots/budget_curves.png`` from ``budget_curves.csv`` (nothing without curves)."""
    from benchkit.results.plots import try_plots
    table = results_folder.budget_curves_path(out_dir)
    curves = pd.read_csv(table) if table.is_file() else pd.DataFrame()
    return try_plots(_plot, curves, budget_plot_path(out_dir)) if len(curves) else []


def budget_plot_path(out_dir: str | Path) -> Path:
    return results_folder.plots_dir(out_dir) / BUDGET_PLOT


def _plot(curves: pd.DataFrame, path: Path) -> list[Path]:
    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.add_subplot()
    for study, group in curves.groupby("study", sort=False):
        ax.plot(group["k"], group["expected_best"], marker="o", markersize=3, label=str(study))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trials (k)")
    ax.set_ylabel(f"expected best {curves['metric'].iloc[0]}")
    ax.set_title("Expected best validation score after k trials (Dodge et al. 2019)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return [path]


def tuning_summary(out_dir: str | Path) -> pd.DataFrame | None:
    """Per study: its budget, trials finished, completed and pruned, the best value and its parameters
    (None when the folder has no tuning)."""
    path = results_folder.trials_table_path(out_dir)
    if not path.is_file():
        return None
    trials = pd.read_csv(path)
    rows = []
    for study, group in trials.groupby("study", sort=False):
        complete = group[group["state"] == "COMPLETE"]
        maximize = group["direction"].iloc[0] == "maximize"
        best = complete.loc[complete["value"].idxmax() if maximize else complete["value"].idxmin()] \
            if len(complete) else None
        params = {c[len("param:"):]: (best[c] if best is not None else None) for c in group if c.startswith("param:")}
        rows.append({"study": study, "budget": int(group["budget"].iloc[0]),
                     "finished": int(group["state"].isin(["COMPLETE", "PRUNED", "FAIL"]).sum()),
                     "pruned": int((group["state"] == "PRUNED").sum()),
                     f"best {group['metric'].iloc[0]}": None if best is None else best["value"], **params})
    return pd.DataFrame(rows)
