"""Tables, claims and plots of a sweep, built from its runs' ``metrics.json`` files only.

Every expected cell of the grid is looked up at ``<sweep_dir>/<cell id>/metrics.json``; cells are
grouped into table entries (rows = ``report.rows`` axes, columns = ``report.column`` axis, every
other axis, typically ``seed``, is aggregated over). Per entry: mean, sample std (ddof=1; shown
only for n >= 2), max, n (runs with status ok), failed (status failed), missing (no metrics.json
or still running), chance (ok runs whose metric is at or below the sweep's chance threshold: the
"failed runs" of Mixout-style tables; they stay in n and in the mean; a NaN metric, which a
degenerate run can produce with metric implementations that do not map undefined values to 0,
counts as chance and is left out of n and the mean), the mean wall time per run, and the paper's
numbers of every ``report.paper`` series (Δ = ours − paper for means). Missing entries are
rendered as "—", never as zeros. The sweep's claims are checked by :mod:`regbench.sweep.claims`.

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
from typing import Any, Callable

from regbench.atomic import write_text_atomic
from regbench.sweep.claims import ClaimResult, evaluate_claims
from regbench.sweep.launch import cell_fingerprint, is_stale, read_fingerprint, read_state
from regbench.sweep.search import cells_at_best
from regbench.sweep.spec import ROW_SEPARATOR, PaperSeries, Sweep

MISSING = "—"
FIGURE_MARK = "≈"  # prefixes a number read off one of the paper's figures
# cell override -> how the scale legend names it, and what its absence means
SCALE_FACTS = (
    ("backbone", "backbone", "config default"),
    ("trainer.max_epochs", "epochs", "config default"),
    ("data.train_limit", "train rows", "all"),
    ("data.eval_limit", "eval rows", "all"),
    ("data.batch_size", "batch", "config default"),
    ("data.max_length", "max length", "config default"),
    ("optim.lr", "lr", "config default"),
)


class ReportError(ValueError):
    """A finished run lacks the metric its table cell needs."""


@dataclass
class Run:
    """One finished run of an entry: its unit (labels of the aggregated axes, e.g. the seed), the
    displayed metric value (None for NaN), whether it is at chance, its wall time and its
    per-validation history ``[(epoch, value), ...]`` (display units)."""

    cell_id: str
    unit: tuple[str, ...]
    value: float | None
    chance: bool
    wall_time_s: float | None
    history: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Entry:
    """One table entry: a row (labels of the row axes) x a column label, aggregated over seeds."""

    row: tuple[str, ...]
    column: str
    metric: str
    runs: list[Run]
    failed: int
    missing: int
    paper: list[float | None]  # one value per report.paper series (None = the series has none here)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell id, error) of failed runs
    stale: list[tuple[str, str, str]] = field(default_factory=list)  # (cell id, recorded, current fingerprint)
    failed_wall_s: float = 0.0  # wall time spent by failed runs (part of the table's time)

    @property
    def values(self) -> list[float]:
        return [r.value for r in self.runs if r.value is not None]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def chance(self) -> int:
        return sum(r.chance for r in self.runs)

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
    def wall_per_run(self) -> float | None:
        walls = [r.wall_time_s for r in self.runs if r.wall_time_s is not None]
        return statistics.fmean(walls) if walls else None

    def diff(self, i: int, series: PaperSeries) -> float | None:
        """Ours − paper for series ``i`` (means and reported numbers; None otherwise)."""
        paper = self.paper[i]
        if series.stat not in ("mean", "reported") or paper is None or self.mean is None:
            return None
        return self.mean - paper


def collect(sweep: Sweep, scale: str, sweep_dir: Path) -> list[Entry]:
    """Read every cell's metrics.json and aggregate them into table entries (grid order)."""
    spec = sweep.report
    aggregated = [a for a in sweep.axes if a not in (*spec.rows, spec.column)]
    entries: dict[tuple[tuple[str, ...], str], Entry] = {}
    for cell in cells_at_best(sweep, scale, sweep_dir):  # searched cells: fingerprinted with their values
        row = tuple(cell.labels[axis] for axis in spec.rows)
        column = cell.labels[spec.column]
        metric = spec.metric_for(column)
        key = (row, column)
        if key not in entries:
            label = ROW_SEPARATOR.join(row)
            paper = [series.value(label, column) for series in spec.paper]
            entries[key] = Entry(row, column, " + ".join(metric.keys), [], 0, 0, paper)
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
            entry.failed_wall_s += _wall(state.metrics or {}) or 0.0
        elif state.status != "ok":
            entry.missing += 1
        else:
            metrics = state.metrics or {}
            raw = _metric_value(metrics, spec.source, metric.keys, run_dir)
            threshold = spec.chance.get(column)
            # a NaN metric is a degenerate run: counted as chance, kept out of the mean
            chance = math.isnan(raw) or (threshold is not None and raw <= threshold)
            value = None if math.isnan(raw) else raw * metric.scale
            history = _history(metrics, metric.keys, metric.scale)
            unit = tuple(cell.labels[a] for a in aggregated)
            entry.runs.append(Run(cell.id, unit, value, chance, _wall(metrics), history))
    return list(entries.values())


def _wall(metrics: dict) -> float | None:
    wall = metrics.get("wall_time_s")
    return float(wall) if isinstance(wall, (int, float)) else None


def _metric_value(metrics: dict, source: str, keys: tuple[str, ...], run_dir: Path) -> float:
    block = metrics.get(source) or {}
    absent = [k for k in keys if not isinstance(block.get(k), (int, float))]
    if absent:
        raise ReportError(
            f"{run_dir}/metrics.json: '{source}' has no numeric {absent}; it has {sorted(block)}. "
            "Fix report.metric in the sweep file."
        )
    return statistics.fmean(float(block[k]) for k in keys)


def _history(metrics: dict, keys: tuple[str, ...], scale: float) -> list[tuple[float, float]]:
    """(epoch number counted from 1, value) for every validation in ``history`` that has the keys."""
    points = []
    for row in metrics.get("history") or []:
        if all(isinstance(row.get(k), (int, float)) for k in keys) and isinstance(row.get("epoch"), (int, float)):
            value = statistics.fmean(float(row[k]) for k in keys)
            if not math.isnan(value):
                points.append((float(row["epoch"]) + 1, value * scale))
    return points


# ----------------------------------------------------------------------------- tables


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


def series_header(series: PaperSeries) -> str:
    """Column title of a paper series; figure-derived and secondary numbers say so."""
    title = {"mean": "paper mean", "max": "paper max", "chance_runs": "paper chance runs",
             "reported": "paper"}[series.stat]
    if series.read_off_figure:
        title += " (read off the paper's figure)"
    if series.secondary:
        title += " (secondary)"
    return title


def series_cell(series: PaperSeries, value: float | None, digits: int) -> str:
    if value is None:
        return MISSING
    if series.stat == "chance_runs":
        text = f"{value:g}" + (f"/{series.out_of}" if series.out_of else "")
    else:
        text = _fmt(value, digits)
    return FIGURE_MARK + text if series.read_off_figure else text


def detail_table(sweep: Sweep, entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """Long table: one line per entry with n/failed/missing, wall time, the paper's numbers and Δ."""
    spec = sweep.report
    d = spec.digits
    with_chance = bool(spec.chance)
    header = [*spec.rows, spec.column, "metric", "mean", "std", "max", "n", "failed"]
    header += ["chance"] if with_chance else []
    header += ["missing", "s/run"]
    for series in spec.paper:
        header.append(series_header(series))
        if series.stat in ("mean", "reported"):
            header.append("Δ")
    body = []
    for e in entries:
        line = [*e.row, e.column, e.metric, _fmt(e.mean, d), _fmt(e.std, d), _fmt(e.max, d), str(e.n), str(e.failed)]
        line += [str(e.chance)] if with_chance else []
        line += [str(e.missing), _fmt(e.wall_per_run, 0)]
        for i, series in enumerate(spec.paper):
            line.append(series_cell(series, e.paper[i], d))
            if series.stat in ("mean", "reported"):
                line.append(_fmt(e.diff(i, series), d, signed=True))
        body.append(line)
    return header, body


def curves_table(sweep: Sweep, entries: list[Entry]) -> tuple[list[str], list[list[str]]] | None:
    """The learning curves as numbers: per entry, ``mean ± std`` over runs of the dev metric after
    each epoch (``history``); None when no run has a history of more than one validation."""
    if not any(len(r.history) > 1 for e in entries for r in e.runs):
        return None
    spec = sweep.report
    epochs = sorted({x for e in entries for r in e.runs for x, _ in r.history})
    header = [*spec.rows, spec.column, *(f"epoch {x:g}" for x in epochs)]
    body = []
    for e in entries:
        points: dict[float, list[float]] = {}
        for run in e.runs:
            for x, value in run.history:
                points.setdefault(x, []).append(value)
        cells = []
        for x in epochs:
            values = points.get(x, [])
            mean = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if len(values) >= 2 else None
            cells.append(_fmt(mean, spec.digits) + (f" ± {_fmt(std, spec.digits)}" if std is not None else ""))
        body.append([*e.row, e.column, *cells])
    return header, body


def paper_tables(sweep: Sweep, scale: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """The paper's numbers in the paper's shape (rows x columns of the full-scale grid):
    ``mean (max)`` when both are given, then one table per other series; (caption, header, body)."""
    spec = sweep.report
    if not spec.paper:
        return []
    full = sweep.cells("full")
    rows = list(dict.fromkeys(sweep.row_label(c.labels) for c in full))
    columns = list(dict.fromkeys(c.labels[spec.column] for c in full))
    d = spec.digits
    means = [s for s in spec.paper if s.stat == "mean" and not s.read_off_figure]
    maxes = [s for s in spec.paper if s.stat == "max" and not s.read_off_figure]
    tables = []
    used: set[int] = set()
    if means:
        mean, top = means[0], (maxes[0] if maxes else None)
        used |= {id(mean)} | ({id(top)} if top else set())

        def cell(row: str, col: str) -> str:
            m = mean.value(row, col)
            x = top.value(row, col) if top else None
            if m is None and x is None:
                return MISSING
            return (_fmt(m, d) if m is not None else MISSING) + (f" ({_fmt(x, d)})" if x is not None else "")

        caption = "Mean (max)" if top else "Mean"
        sources = mean.source if top is None or top.source == mean.source else f"{mean.source}; max: {top.source}"
        tables.append((f"{caption}, {sources}", _paper_header(spec, columns), _paper_body(rows, columns, cell, mean, top)))
    for series in spec.paper:
        if id(series) in used:
            continue
        if series.read_off_figure:
            caption = (f"{series_header(series).capitalize()}: {series.source}. {FIGURE_MARK} = read off a figure, "
                       "not a number the paper states")
        elif series.secondary:
            caption = f"Secondary numbers (not from the paper itself): {series.source}"
        else:
            caption = f"{series_header(series).capitalize()}: {series.source}"
        tables.append((caption, _paper_header(spec, columns),
                       _paper_body(rows, columns, lambda r, c, s=series: series_cell(s, s.value(r, c), d), series)))
    return tables


def _paper_header(spec, columns: list[str]) -> list[str]:
    return [" / ".join(spec.rows), *columns]


def _paper_body(rows, columns, cell, *series) -> list[list[str]]:
    shown = [r for r in rows if any(s is not None and r in s.values for s in series)]
    return [[row, *(cell(row, c) for c in columns)] for row in shown]


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


# ----------------------------------------------------------------------------- legend


def scale_legend(sweep: Sweep, scale: str) -> str:
    """What the scale means: backbone, rows, columns, runs per cell, epochs, data sizes, lr."""
    spec = sweep.report
    cells = sweep.cells(scale)
    axes = sweep.axes_for(scale)
    aggregated = [a for a in axes if a not in (*spec.rows, spec.column)]
    rows = list(dict.fromkeys(sweep.row_label(c.labels) for c in cells))
    facts = [f"rows: {len(rows)} ({', '.join(spec.rows)})",
             f"columns: {', '.join(v.label for v in axes[spec.column])}"]
    per_cell = math.prod(len(axes[a]) for a in aggregated) if aggregated else 1
    facts.append(f"runs per cell: {per_cell}" + "".join(
        f" ({a} {', '.join(v.label for v in axes[a])})" for a in aggregated))
    for key, name, absent in SCALE_FACTS:
        values = list(dict.fromkeys(_label(c.overrides.get(key, absent)) for c in cells))
        facts.append(f"{name}: {' | '.join(values)}" + (" (varies by cell)" if len(values) > 1 else ""))
    description = sweep.scales[scale].get("description", "")
    head = f"**Scale `{scale}`**" + (f": {description}" if description else "")
    return f"{head}. " + "; ".join(facts) + f"; {len(cells)} runs in all."


def _label(value: Any) -> str:
    return "null" if value is None else str(value)


def metric_legend(sweep: Sweep, scale: str) -> str:
    spec = sweep.report
    scales = sorted({m.scale for m in spec.metrics.values()})
    factor = " × ".join(f"{s:g}" for s in scales) if len(scales) == 1 else "per-metric factors"
    text = (
        f"Metric source `{spec.source}` (× {factor}); mean ± sample std over "
        f"{', '.join(a for a in sweep.axes if a not in (*spec.rows, spec.column)) or 'runs'}; "
        "n = finished runs, failed = runs with status failed, missing = not run or unfinished"
    )
    if spec.chance:
        text += ", chance = finished runs at or below the chance threshold (included in n and mean)"
    return text + f"; s/run = mean wall time of a run (`wall_time_s`); {MISSING} = no value."


def wall_legend(entries: list[Entry]) -> str:
    walls = [r.wall_time_s for e in entries for r in e.runs if r.wall_time_s is not None]
    failed = sum(e.failed_wall_s for e in entries)
    total = sum(walls) + failed
    if not walls and not failed:
        return "Wall time: no finished run yet."
    text = f"Wall time: {total:.0f} s ({total / 60:.1f} min) summed over the runs' `wall_time_s`"
    if walls:
        text += f" ({len(walls)} finished runs, {statistics.fmean(walls):.0f} s per run"
        text += f"; failed runs {failed:.0f} s)" if failed else ")"
    return text + ": the table's time on one worker running one cell at a time."


# ----------------------------------------------------------------------------- claims


def _fmt_interval(check, digits: int) -> str:
    interval = check.interval
    if check.effect is None:
        return "no paired runs"
    text = _fmt(check.effect, digits, signed=check.kind != "value")
    if interval is not None:
        low, high = interval
        text += f" [{_fmt(low, digits, signed=check.kind != 'value')}, {_fmt(high, digits, signed=check.kind != 'value')}]"
    if check.sd is not None:
        text += f", sd {_fmt(check.sd, digits)}"
    return text


def _units_name(sweep: Sweep) -> str:
    aggregated = [a for a in sweep.axes if a not in (*sweep.report.rows, sweep.report.column)]
    return "seeds" if aggregated == ["seed"] else "paired units (" + ", ".join(aggregated) + ")"


def claims_section(sweep: Sweep, results: list[ClaimResult]) -> list[str]:
    """The claims as a numbered list: per group (e.g. backbone) the effect, 95% CI, sd, n, verdict."""
    if not results:
        return []
    digits = max(sweep.report.digits, 2)
    units = _units_name(sweep)
    lines = ["## Claims", "",
             "The paper's claims, checked on these runs. Effect = mean over paired runs (same "
             f"{'seed' if units == 'seeds' else 'unit'}) of the difference; [95% paired t-interval]; sd = spread of "
             "the per-run differences; verdict: agree / disagree when the interval excludes 0 on the claimed / "
             "other side (a `value` claim: contains / misses the paper's number), cannot tell when it covers 0 or "
             "n < 3. Several checks agree only if all agree. Rule: `regbench/sweep/claims.py`.", ""]
    for i, result in enumerate(results, 1):
        claim = result.claim
        paper = []
        if claim.paper_effect is not None:
            paper.append(f"paper: {claim.paper_effect:+g}")
        if claim.paper_value is not None:
            paper.append(f"paper: {claim.paper_value:g}")
        head = f"{i}. {claim.text} ({claim.source}{'; ' + '; '.join(paper) if paper else ''})"
        if result.skipped:
            lines.append(f"{head}: **{result.verdict}**: {result.skipped}.")
            continue
        lines.append(f"{head}: **{result.verdict}**")
        for group in result.groups:
            name = ROW_SEPARATOR.join(group.group)
            if len(group.checks) == 1 or not name:
                prefix = f"{name}: " if name else ""
                lines += [f"   - {prefix}{_check_line(c, digits, units)}" for c in group.checks]
                continue
            lines.append(f"   - {name}: **{group.verdict}** (every check must agree)")
            lines += [f"     - {_check_line(c, digits, units)}" for c in group.checks]
    return lines + [""]


def _check_line(check, digits: int, units: str) -> str:
    counts = f"; {check.counts}" if check.counts else ""
    return f"{check.description}: {_fmt_interval(check, digits)}, n = {check.n} {units}{counts} → {check.verdict}"


# ----------------------------------------------------------------------------- documents


def render_markdown(sweep: Sweep, scale: str, entries: list[Entry], images: dict[str, str] | None = None) -> str:
    """The Markdown report: title, scale legend, summary with the plot, the paper's numbers,
    claims, detail table, learning curves, failed and stale runs. ``images``: plot kind
    (``results``, ``curves``) -> file name, embedded relative to the Markdown file."""
    images = images or {}
    parts = [f"# {sweep.title}", ""]
    if sweep.paper:
        parts += [f"Paper: {sweep.paper}", ""]
    parts += [scale_legend(sweep, scale), "", metric_legend(sweep, scale), "", wall_legend(entries), ""]
    warning = stale_warning(entries)
    if warning:
        parts += [f"**Warning:** {warning}", ""]
    parts += ["## Summary", "", _md_table(*summary_table(sweep, entries)), ""]
    if "results" in images:
        parts += [f"![Per-task results: one dot per run, mean ± std, chance line, paper markers]({images['results']})", ""]
    tables = paper_tables(sweep, scale)
    if tables:
        parts += ["## The paper's numbers", ""]
        for caption, header, body in tables:
            parts += [f"{caption}:", "", _md_table(header, body), ""]
    parts += claims_section(sweep, evaluate_claims(sweep, scale, entries))
    parts += ["## Cells vs. paper", "", _md_table(*detail_table(sweep, entries)), ""]
    curves = curves_table(sweep, entries)
    if curves is not None:
        parts += ["## Learning curves", "",
                  "Dev metric after every epoch's validation, mean ± std over the runs that reached it, from "
                  "`metrics.json` history (within one run's schedule: epoch e of an E-epoch run).", ""]
        if "curves" in images:
            parts += [f"![Learning curves]({images['curves']})", ""]
        parts += [_md_table(*curves), ""]
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
               "Δ": r"$\Delta$", "≈": r"$\approx$", "−": "-", MISSING: "--"}


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
    """One line per entry with unrounded numbers (empty = no value); one column per paper series
    (``paper_<stat>``, ``_figure`` / ``_secondary`` when so marked) and its ``diff`` for means."""
    spec = sweep.report
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    series_cols = []
    for i, series in enumerate(spec.paper):
        name = f"paper{i + 1}_{series.stat}" + ("_figure" if series.read_off_figure else "") + (
            "_secondary" if series.secondary else "")
        series_cols += [name] + ([f"{name}_diff"] if series.stat in ("mean", "reported") else [])
    writer.writerow([*spec.rows, spec.column, "metric", "mean", "std", "max", "n", "failed", "chance", "missing",
                     "wall_s_per_run", *series_cols])

    def num(v: float | None) -> str:
        return "" if v is None else repr(v)

    for e in entries:
        line = [*e.row, e.column, e.metric, num(e.mean), num(e.std), num(e.max), e.n, e.failed, e.chance, e.missing,
                num(e.wall_per_run)]
        for i, series in enumerate(spec.paper):
            line.append(num(e.paper[i]))
            if series.stat in ("mean", "reported"):
                line.append(num(e.diff(i, series)))
        writer.writerow(line)
    return out.getvalue()


def write_report(sweep: Sweep, scale: str, sweep_dir: Path, out_dir: Path | None = None,
                 warn: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Collect, aggregate and write ``<name>_<scale>.{md,csv,tex,png}`` (+ ``_curves.png`` when the
    runs have a validation history); returns the paths. ``warn`` receives the stale-runs warning."""
    from regbench.sweep.plots import render_curves, render_results

    entries = collect(sweep, scale, sweep_dir)
    warning = stale_warning(entries)
    if warning and warn is not None:
        warn(warning)
    out_dir = out_dir or sweep_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{sweep.name}_{scale}"
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "tex", "png")}
    render_results(sweep, scale, entries, paths["png"])
    images = {"results": paths["png"].name}
    curves = out_dir / f"{stem}_curves.png"
    if render_curves(sweep, scale, entries, curves):
        paths["curves"] = curves
        images["curves"] = curves.name
    write_text_atomic(paths["md"], render_markdown(sweep, scale, entries, images))
    write_text_atomic(paths["csv"], render_csv(sweep, entries))
    write_text_atomic(paths["tex"], render_latex(sweep, scale, entries))
    return paths
