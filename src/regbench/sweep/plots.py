"""The report's figures (matplotlib, Agg backend; imported only by ``report``).

``render_results``: one panel per column (task): one dot per run (seed / restart) per row, the
mean ± std as a black error bar, the chance threshold as a dashed line, the paper's mean (and max)
as markers; the y axis is zoomed to what is drawn and named after the metric.
``render_curves``: one panel per column: the dev metric after every validation (metrics.json
``history``), mean over the row's runs with a ± std band, the chance line.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from regbench.atomic import atomic_path
from regbench.sweep.spec import ROW_SEPARATOR, Sweep

PAPER_MARKERS = {"mean": ("D", "paper mean"), "reported": ("s", "paper"), "max": ("^", "paper max")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, plt, width: float = 3.6, height: float = 3.0):
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.9), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _metric_label(sweep: Sweep, column: str) -> str:
    metric = sweep.report.metric_for(column)
    name = " + ".join(metric.keys)
    return f"{name} × {metric.scale:g}" if metric.scale != 1 else name


def _zoom(ax, values: list[float]) -> None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    pad = 0.08 * (high - low) if high > low else max(abs(high) * 0.05, 1.0)
    ax.set_ylim(low - pad, high + pad)


def render_results(sweep: Sweep, scale: str, entries: list, path: Path) -> None:
    """Per-task panels of every run, mean ± std, chance line and the paper's markers (see module)."""
    plt = _pyplot()
    spec = sweep.report
    columns = list(dict.fromkeys(e.column for e in entries))
    rows = list(dict.fromkeys(e.row for e in entries))
    by_key = {(e.row, e.column): e for e in entries}
    fig, axes = _grid(len(columns), plt, width=max(3.6, 0.45 * len(rows) + 1.5))
    labels = [ROW_SEPARATOR.join(r) for r in rows]
    handles: dict[str, object] = {}
    for ax, column in zip(axes, columns):
        shown: list[float] = []
        for i, row in enumerate(rows):
            e = by_key.get((row, column))
            if e is None or not e.values:
                ax.text(i, 0.5, "no runs", transform=ax.get_xaxis_transform(), ha="center", va="center",
                        rotation=90, color="0.5", fontsize=7)
                continue
            n = len(e.values)
            xs = [i + (0.24 * (k / (n - 1) - 0.5) if n > 1 else 0.0) for k in range(n)]
            handles["run"] = ax.scatter(xs, e.values, s=12, color=f"C{i % 10}", alpha=0.7, zorder=2)
            handles["mean ± std"] = ax.errorbar(i, e.mean, yerr=e.std or 0.0, fmt="_", color="black",
                                                markersize=14, capsize=4, zorder=3)
            shown += e.values
            for k, series in enumerate(spec.paper):
                marker = PAPER_MARKERS.get(series.stat)
                if marker is None or series.read_off_figure or e.paper[k] is None:
                    continue
                symbol, name = marker
                name += " (secondary)" if series.secondary else ""
                handles[name] = ax.scatter([i + 0.3], [e.paper[k]], marker=symbol, s=28, facecolors="none",
                                           edgecolors="crimson", zorder=4)
                shown.append(e.paper[k])
        threshold = spec.chance.get(column)
        if threshold is not None:
            chance = threshold * spec.metric_for(column).scale
            handles["chance"] = ax.axhline(chance, color="0.4", linestyle="--", linewidth=1, zorder=1)
            shown.append(chance)
        _zoom(ax, shown)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(column, fontsize=9)
        ax.set_ylabel(_metric_label(sweep, column), fontsize=8)
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper right", fontsize=7, ncol=len(handles))
    fig.suptitle(f"{sweep.title} ({scale})", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path)
    plt.close(fig)


def render_curves(sweep: Sweep, scale: str, entries: list, path: Path) -> bool:
    """Learning curves from the runs' validation history; False (nothing written) when no run has one."""
    if not any(len(r.history) > 1 for e in entries for r in e.runs):
        return False
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    spec = sweep.report
    columns = list(dict.fromkeys(e.column for e in entries))
    rows = list(dict.fromkeys(e.row for e in entries))
    by_key = {(e.row, e.column): e for e in entries}
    fig, axes = _grid(len(columns), plt)
    lines: dict[str, object] = {}
    for ax, column in zip(axes, columns):
        shown: list[float] = []
        for i, row in enumerate(rows):
            e = by_key.get((row, column))
            points: dict[float, list[float]] = {}
            for run in e.runs if e else []:
                for epoch, value in run.history:
                    points.setdefault(epoch, []).append(value)
            if not points:
                continue
            xs = sorted(points)
            means = [statistics.fmean(points[x]) for x in xs]
            sds = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
            label = ROW_SEPARATOR.join(row)
            (lines[label],) = ax.plot(xs, means, marker="o", markersize=3, color=f"C{i % 10}", linewidth=1.2)
            ax.fill_between(xs, [m - s for m, s in zip(means, sds)], [m + s for m, s in zip(means, sds)],
                            color=f"C{i % 10}", alpha=0.15, linewidth=0)
            shown += [m - s for m, s in zip(means, sds)] + [m + s for m, s in zip(means, sds)]
        threshold = spec.chance.get(column)
        if threshold is not None:
            chance = threshold * spec.metric_for(column).scale
            lines["chance"] = ax.axhline(chance, color="0.4", linestyle="--", linewidth=1)
            shown.append(chance)
        _zoom(ax, shown)
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_metric_label(sweep, column), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.legend(list(lines.values()), list(lines), loc="upper right", fontsize=7, ncol=min(4, len(lines)))
    fig.suptitle(f"{sweep.title} ({scale}): learning curves", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    save_figure(fig, path)
    plt.close(fig)
    return True


def save_figure(fig, path: Path) -> None:
    """Write a figure atomically (:func:`regbench.atomic.atomic_path`), in the format its suffix names."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=Path(path).suffix.lstrip(".") or "png")
