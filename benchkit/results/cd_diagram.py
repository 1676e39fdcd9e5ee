"""The critical-difference diagram of a ranking (Demšar 2006), drawn by scikit-posthocs onto a matplotlib Figure.

Configurations sit at their average rank (1 = best, at the left); a bar joins those the Nemenyi test cannot
tell apart, and the scale bar above the axis shows the critical difference. Written per split strategy to
``<out>/plots/critical_difference_<metric>[_<strategy>].png`` beside the other experiment plots.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from benchkit.evaluation.ranking import Ranking
from benchkit.io import atomic_path

CD_PREFIX = "critical_difference_"


def plot_critical_difference(ranking: Ranking, metric: str, title: str = "") -> Figure:
    """Average ranks of ``metric`` with the Nemenyi groups and the critical difference."""
    import scikit_posthocs  # imported when used: it takes seconds
    k = len(ranking.mean_ranks)
    fig = Figure(figsize=(10.0, 2.2 + 0.32 * k), dpi=100, layout="constrained")
    ax = fig.subplots()
    scikit_posthocs.critical_difference_diagram(ranking.mean_ranks, ranking.nemenyi, ax=ax, alpha=ranking.alpha,
                                                cd=ranking.critical_difference,
                                                label_fmt_left="{label} ({rank:.2f})",
                                                label_fmt_right="({rank:.2f}) {label}")
    ax.set_title(f"{title + ': ' if title else ''}average rank of {metric} over {ranking.blocks} blocks (1 = best); "
                 f"Friedman p = {ranking.p_value:.3g}, Nemenyi CD = {ranking.critical_difference:.2f} "
                 f"(alpha {ranking.alpha:g})", fontsize=9)
    return fig


def write_critical_difference(plot_dir: Path, found: dict[str, Ranking], metric: str) -> list[Path]:
    """One diagram per ranked split strategy (named by the strategy when there are several); diagrams an earlier
    call wrote and this one does not are removed."""
    plot_dir = Path(plot_dir)
    written = []
    for split, ranking in found.items():
        name = f"{CD_PREFIX}{metric}" + (f"_{split}" if len(found) > 1 else "") + ".png"
        fig = plot_critical_difference(ranking, metric, split if len(found) > 1 else "")
        plot_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(plot_dir / name) as tmp:
            fig.savefig(tmp, format="png")
        written.append(plot_dir / name)
    for stale in set(plot_dir.glob(f"{CD_PREFIX}*.png")) - set(written):
        stale.unlink(missing_ok=True)
    return written
