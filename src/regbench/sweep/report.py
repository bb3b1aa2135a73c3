"""Tables and a plot of a sweep, built from its runs' ``metrics.json`` files only.

Every expected cell of the grid is looked up at ``<sweep_dir>/<cell id>/metrics.json``; cells are
grouped into table entries (rows = ``report.rows`` axes, columns = ``report.column`` axis, every
other axis, typically ``seed``, is aggregated over). Per entry: mean, sample std (ddof=1; shown
only for n >= 2), max, n (runs with status ok), failed (status failed), missing (no metrics.json
or still running), chance (ok runs whose metric is at or below the sweep's chance threshold: the
"failed runs" of Mixout-style tables; they stay in n and in the mean; a NaN metric, which a
degenerate run can produce with metric implementations that do not map undefined values to 0,
counts as chance and is left out of n and the mean), the paper's number and the difference
mean - paper. Missing entries are rendered as "—", never as zeros.

Stale runs (their ``sweep_fingerprint.json`` names settings other than the sweep file's current
ones, see :mod:`regbench.sweep.launch`) are left out of every number: they count as missing, are
listed under "Stale runs" with a warning line, and ``run`` relaunches them.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from regbench.atomic import atomic_path, write_text_atomic
from regbench.sweep.launch import cell_fingerprint, is_stale, read_fingerprint, read_state
from regbench.sweep.spec import ROW_SEPARATOR, Sweep

MISSING = "—"


class ReportError(ValueError):
    """A finished run lacks the metric its table cell needs."""


@dataclass
class Entry:
    """One table entry: a row (labels of the row axes) x a column label, aggregated over seeds."""

    row: tuple[str, ...]
    column: str
    metric: str
    values: list[float]
    failed: int
    missing: int
    chance: int
    paper: float | None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell id, error) of failed runs
    stale: list[tuple[str, str, str]] = field(default_factory=list)  # (cell id, recorded, current fingerprint)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    @property
    def max(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def diff(self) -> float | None:
        return None if self.mean is None or self.paper is None else self.mean - self.paper


def collect(sweep: Sweep, scale: str, sweep_dir: Path) -> list[Entry]:
    """Read every cell's metrics.json and aggregate them into table entries (grid order)."""
    spec = sweep.report
    entries: dict[tuple[tuple[str, ...], str], Entry] = {}
    for cell in sweep.cells(scale):
        row = tuple(cell.labels[axis] for axis in spec.rows)
        column = cell.labels[spec.column]
        metric = spec.metric_for(column)
        key = (row, column)
        if key not in entries:
            paper = spec.paper.get(ROW_SEPARATOR.join(row), {}).get(column)
            entries[key] = Entry(row, column, " + ".join(metric.keys), [], 0, 0, 0, paper)
        entry = entries[key]
        run_dir = sweep_dir / cell.id
        if is_stale(cell, run_dir):
            # made with other settings: not a result of this sweep file; counts as missing
            entry.missing += 1
            entry.stale.append((cell.id, str(read_fingerprint(run_dir)), cell_fingerprint(cell)))
            continue
        state = read_state(run_dir)
        if state.status == "failed":
            entry.failed += 1
            entry.failures.append((cell.id, state.error or "failed (no error recorded)"))
        elif state.status != "ok":
            entry.missing += 1
        else:
            raw = _metric_value(state.metrics or {}, spec.source, metric.keys, run_dir)
            threshold = spec.chance.get(column)
            if math.isnan(raw):
                # a degenerate run (undefined metric): counted as chance, kept out of the mean.
                entry.chance += 1
                continue
            if threshold is not None and raw <= threshold:
                entry.chance += 1
            entry.values.append(raw * metric.scale)
    return list(entries.values())


def _metric_value(metrics: dict, source: str, keys: tuple[str, ...], run_dir: Path) -> float:
    block = metrics.get(source) or {}
    absent = [k for k in keys if not isinstance(block.get(k), (int, float))]
    if absent:
        raise ReportError(
            f"{run_dir}/metrics.json: '{source}' has no numeric {absent}; it has {sorted(block)}. "
            "Fix report.metric in the sweep file."
        )
    return statistics.fmean(float(block[k]) for k in keys)


# ----------------------------------------------------------------------------- rendering


def _fmt(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _summary_cell(entry: Entry | None, digits: int, pm: str) -> str:
    if entry is None or entry.mean is None:
        return MISSING
    if entry.std is None:
        return _fmt(entry.mean, digits)
    return f"{_fmt(entry.mean, digits)}{pm}{_fmt(entry.std, digits)}"


def summary_table(sweep: Sweep, entries: list[Entry], pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Wide table: one line per row, one column per column label, "mean ± std" per entry."""
    spec = sweep.report
    columns = list(dict.fromkeys(e.column for e in entries))
    rows = list(dict.fromkeys(e.row for e in entries))
    by_key = {(e.row, e.column): e for e in entries}
    header = [*spec.rows, *columns]
    body = [[*row, *(_summary_cell(by_key.get((row, c)), spec.digits, pm) for c in columns)] for row in rows]
    if spec.average:
        header.append("average")
        for line, row in zip(body, rows):
            line.append(_fmt(row_average([by_key.get((row, c)) for c in columns]), spec.digits))
    return header, body


def row_average(entries: list[Entry | None]) -> float | None:
    """Mean of a row's column means (the papers' "Avg." column); None unless every column has one."""
    means = [e.mean if e is not None else None for e in entries]
    return None if not means or any(m is None for m in means) else statistics.fmean(means)


def detail_table(sweep: Sweep, entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """Long table: one line per entry with n/failed/missing, the paper's number and the difference."""
    spec = sweep.report
    d = spec.digits
    with_chance = bool(spec.chance)
    header = [*spec.rows, spec.column, "metric", "mean", "std", "max", "n", "failed"]
    header += ["chance"] if with_chance else []
    header += ["missing", "paper", "Δ"]
    body = []
    for e in entries:
        line = [*e.row, e.column, e.metric, _fmt(e.mean, d), _fmt(e.std, d), _fmt(e.max, d), str(e.n), str(e.failed)]
        line += [str(e.chance)] if with_chance else []
        line += [str(e.missing), _fmt(e.paper, d), _fmt(e.diff, d, signed=True)]
        body.append(line)
    return header, body


def _md_table(header: list[str], body: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in body)])


def stale_runs(entries: list[Entry]) -> list[tuple[str, str, str]]:
    """(cell id, recorded fingerprint, current fingerprint) of every stale run, grid order."""
    return [s for e in entries for s in e.stale]


def stale_warning(entries: list[Entry]) -> str | None:
    """One line saying how many runs were left out as stale (None when there are none)."""
    stale = stale_runs(entries)
    if not stale:
        return None
    ids = ", ".join(s[0] for s in stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
    return (f"{len(stale)} run(s) are stale (made with settings the sweep file no longer has) and are left out "
            f"of the tables (counted as missing); `run` relaunches them: {ids}")


def _legend(sweep: Sweep, scale: str) -> str:
    spec = sweep.report
    scales = sorted({m.scale for m in spec.metrics.values()})
    factor = " × ".join(f"{s:g}" for s in scales) if len(scales) == 1 else "per-metric factors"
    text = (
        f"Scale `{scale}`; metric source `{spec.source}` (× {factor}); mean ± sample std over "
        f"{', '.join(a for a in sweep.axes if a not in (*spec.rows, spec.column)) or 'runs'}; "
        "n = finished runs, failed = runs with status failed, missing = not run or unfinished"
    )
    if spec.chance:
        text += ", chance = finished runs at or below the chance threshold (included in n and mean)"
    return text + f"; {MISSING} = no value."


def render_markdown(sweep: Sweep, scale: str, entries: list[Entry]) -> str:
    """The Markdown report: title, legend, summary table, detail table with the paper's numbers."""
    parts = [f"# {sweep.title}", ""]
    if sweep.paper:
        parts += [f"Paper: {sweep.paper}", ""]
    parts += [_legend(sweep, scale), ""]
    warning = stale_warning(entries)
    if warning:
        parts += [f"**Warning:** {warning}", ""]
    parts += ["## Summary", "", _md_table(*summary_table(sweep, entries)), ""]
    parts += ["## Cells vs. paper", "", _md_table(*detail_table(sweep, entries)), ""]
    failures = [f for e in entries for f in e.failures]
    if failures:
        parts += ["## Failed runs", "", _md_table(["run", "error"], [[i, _one_line(err)] for i, err in failures]), ""]
    stale = stale_runs(entries)
    if stale:
        rows = [[i, recorded, current] for i, recorded, current in stale]
        parts += ["## Stale runs (not in the tables)", "",
                  _md_table(["run", "recorded fingerprint", "current fingerprint"], rows), ""]
    return "\n".join(parts)


def _one_line(error: str, limit: int = 200) -> str:
    text = " ".join(error.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$",
               "Δ": r"$\Delta$", MISSING: "--"}


def _tex_escape(text: str) -> str:
    return "".join(TEX_SPECIAL.get(ch, ch) for ch in text)


def _tex_table(header: list[str], body: list[list[str]], caption: str) -> str:
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\begin{tabular}{" + "l" * len(header) + "}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(_tex_escape(c) for c in row) + r" \\" for row in body),
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + _tex_escape(caption) + "}",
        r"\end{table}",
    ]
    return "\n".join(lines)


def render_latex(sweep: Sweep, scale: str, entries: list[Entry]) -> str:
    """Two booktabs tables (summary, detail with paper numbers); needs ``\\usepackage{booktabs}``."""
    return "\n\n".join([
        _tex_table(*summary_table(sweep, entries), caption=f"{sweep.title} ({scale}): mean ± std"),
        _tex_table(*detail_table(sweep, entries), caption=f"{sweep.title} ({scale}): cells vs. paper"),
    ]) + "\n"


def render_csv(sweep: Sweep, entries: list[Entry]) -> str:
    """One line per entry with unrounded numbers (empty = no value)."""
    spec = sweep.report
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*spec.rows, spec.column, "metric", "mean", "std", "max", "n", "failed", "chance", "missing", "paper", "diff"])
    for e in entries:
        writer.writerow([*e.row, e.column, e.metric, *("" if v is None else repr(v) for v in (e.mean, e.std, e.max)),
                         e.n, e.failed, e.chance, e.missing, "" if e.paper is None else repr(e.paper),
                         "" if e.diff is None else repr(e.diff)])
    return out.getvalue()


def render_plot(sweep: Sweep, scale: str, entries: list[Entry], path: Path) -> None:
    """Per-column bar charts (one bar per row, error bar = std, x = the paper's number)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(dict.fromkeys(e.column for e in entries))
    rows = list(dict.fromkeys(e.row for e in entries))
    by_key = {(e.row, e.column): e for e in entries}
    ncols = min(4, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows + 0.6), squeeze=False)
    labels = [ROW_SEPARATOR.join(r) for r in rows]
    for ax, column in zip(axes.flat, columns):
        for i, row in enumerate(rows):
            e = by_key.get((row, column))
            if e is None or e.mean is None:
                ax.text(i, 0.5, "missing", transform=ax.get_xaxis_transform(), ha="center", va="center",
                        rotation=90, color="0.5", fontsize=8)
                continue
            ax.bar(i, e.mean, yerr=e.std, capsize=3, color=f"C{i % 10}")
            if e.paper is not None:
                ax.plot(i, e.paper, "kx", markersize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(f"{column}", fontsize=9)
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.suptitle(f"{sweep.title} ({scale}); x = paper", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def write_report(sweep: Sweep, scale: str, sweep_dir: Path, out_dir: Path | None = None,
                 warn: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Collect, aggregate and write ``<name>_<scale>.{md,csv,tex,png}``; returns the paths.
    ``warn`` receives the stale-runs warning line, if any."""
    entries = collect(sweep, scale, sweep_dir)
    warning = stale_warning(entries)
    if warning and warn is not None:
        warn(warning)
    out_dir = out_dir or sweep_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{sweep.name}_{scale}"
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "tex", "png")}
    write_text_atomic(paths["md"], render_markdown(sweep, scale, entries))
    write_text_atomic(paths["csv"], render_csv(sweep, entries))
    write_text_atomic(paths["tex"], render_latex(sweep, scale, entries))
    render_plot(sweep, scale, entries, paths["png"])
    return paths
