"""Sweep specifications: one ``sweeps/<paper>_<table>.yaml`` per paper table, expanded into cells.

A sweep file declares a grid (``axes``), overrides shared by every run (``fixed``), per-scale
changes (``scales.full`` = the paper's protocol, ``scales.mini`` = the same grid shape on a small
backbone/subset/step budget) and how the table is read (``report``). Expansion is a cartesian
product of the axes in the order they are declared (the last axis varies fastest); every product
element is one *cell* = one ``train.py`` run with a stable, filesystem-safe id. ``report.paper``
holds the paper's own numbers as labelled series (mean, max, counts read off a figure, secondary
quotes) and ``claims`` the paper's qualitative statements in a checkable form (evaluated by
:mod:`regbench.sweep.claims`). The format is documented in ``sweeps/README.md``.

Only the standard library and OmegaConf are imported here so ``--dry-run`` stays fast.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

TOP_LEVEL_KEYS = {"name", "title", "paper", "description", "axes", "fixed", "scales", "report", "claims", "search"}
SCALE_KEYS = {"description", "fixed", "axes", "select"}
REPORT_KEYS = {"rows", "column", "metric", "source", "scale", "digits", "chance", "paper", "average"}
AXIS_VALUE_KEYS = {"label", "overrides", "grid", "needs"}
PAPER_SERIES_KEYS = {"stat", "source", "values", "read_off_figure", "secondary", "out_of"}
# What a paper series reports per cell, and the statistic of ours it is compared with:
#   mean / max: over the paper's restarts (ours: mean / max over seeds);
#   chance_runs: runs at chance level (ours: the chance count); reported: a number whose
#   aggregation the source does not state (compared with our mean).
PAPER_STATS = ("mean", "max", "chance_runs", "reported")
CLAIM_KEYS = {"text", "source", "kind", "axis", "a", "b", "order", "columns", "each", "paper_effect",
              "paper_value", "scales"}
CLAIM_KINDS = ("better", "fewer_chance_runs", "order", "value")
# A Hydra override key we place into generated per-cell configs: a plain dotted config path.
# Hydra's own keys and group paths with "/" (launchers, sweepers) belong on the command line.
OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$")
UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")  # "+" joins combined methods: mixout+wdecay
ROW_SEPARATOR = " / "


class SweepSpecError(ValueError):
    """A sweep file is malformed; the message names the file and the offending key."""


@dataclass(frozen=True)
class AxisValue:
    """One value of an axis: a display label and the overrides it contributes to a run.

    ``needs``: what this value waits for when the checkout cannot run it yet (e.g. a regularizer
    still being written); its cells stay in the grid but ``run`` records them as failed with this
    text instead of launching them (never a silent run of something else).
    """

    label: str
    overrides: dict[str, Any]
    needs: str = ""


@dataclass(frozen=True)
class Cell:
    """One run of the grid.

    ``labels`` maps every axis to this cell's label on it; ``overrides`` are the ordered
    ``key -> value`` Hydra overrides (fixed < scale fixed < axes, later wins); ``needs`` collects
    the ``needs`` of its axis values (empty = runnable).
    """

    id: str
    labels: dict[str, str]
    overrides: dict[str, Any]
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricSpec:
    """What a table cell shows for one column: the mean of ``keys`` times ``scale``."""

    keys: tuple[str, ...]
    scale: float


@dataclass(frozen=True)
class PaperSeries:
    """One kind of number from the paper, per full-scale row label and column label.

    ``read_off_figure``: counted or measured on a plot, not stated as a number (shown in its own
    column, marked "≈"); ``secondary``: quoted by someone other than the paper (labelled so).
    ``out_of``: restarts behind a ``chance_runs`` count.
    """

    stat: str
    source: str
    values: dict[str, dict[str, float | None]]
    read_off_figure: bool = False
    secondary: bool = False
    out_of: int | None = None

    def value(self, row: str, column: str) -> float | None:
        return self.values.get(row, {}).get(column)


@dataclass(frozen=True)
class Claim:
    """A qualitative statement of the paper, checked on our runs (see :mod:`regbench.sweep.claims`).

    ``kind``: ``better`` (rows ``a`` beat rows ``b`` in the metric), ``fewer_chance_runs`` (``a``
    has fewer runs at chance level than ``b``), ``order`` (each label of ``order`` beats the next),
    ``value`` (our mean of ``a`` against the paper's absolute ``paper_value``). Labels are values of
    the row axis ``axis``; the other row axes (e.g. backbone) give one check per label.
    ``columns``: the columns involved (None = all); ``each``: one check per column instead of their
    average. ``scales``: checked only at these scales (None = every scale).
    """

    text: str
    source: str
    kind: str
    axis: str
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    each: bool = False
    paper_effect: float | None = None
    paper_value: float | None = None
    scales: tuple[str, ...] | None = None


@dataclass
class ReportSpec:
    """How runs become a table: rows = combination of ``rows`` axes, columns = ``column`` axis,
    every other axis (typically ``seed``) is aggregated over."""

    rows: list[str]
    column: str
    metrics: dict[str, MetricSpec]
    source: str = "best"
    digits: int = 1
    average: bool = False  # summary table gets an "average" column (mean of the row's column means)
    chance: dict[str, float] = field(default_factory=dict)
    paper: list[PaperSeries] = field(default_factory=list)

    def metric_for(self, column_label: str) -> MetricSpec:
        return self.metrics[column_label]


@dataclass
class Sweep:
    """A parsed sweep file. ``cells(scale)`` expands it."""

    name: str
    title: str
    paper: str
    axes: dict[str, list[AxisValue]]
    fixed: dict[str, Any]
    scales: dict[str, dict[str, Any]]
    report: ReportSpec
    path: Path | None = None
    claims: list[Claim] = field(default_factory=list)
    search: Any = None  # regbench.sweep.search.SearchSpec: per-group hyperparameter search before the seeds

    def axes_for(self, scale: str) -> dict[str, list[AxisValue]]:
        """The axes with the scale's replacements (``axes``) and subsets (``select``) applied
        (same axis names and order)."""
        self._check_scale(scale)
        replaced = self.scales[scale].get("axes", {})
        selected = self.scales[scale].get("select", {})
        axes = {name: replaced.get(name, values) for name, values in self.axes.items()}
        return {name: [v for v in values if name not in selected or v.label in selected[name]]
                for name, values in axes.items()}

    def fixed_for(self, scale: str) -> dict[str, Any]:
        self._check_scale(scale)
        return {**self.fixed, **self.scales[scale].get("fixed", {})}

    def cells(self, scale: str) -> list[Cell]:
        """Every cell of the grid at ``scale``, in launch order."""
        axes = self.axes_for(scale)
        fixed = self.fixed_for(scale)
        cells: list[Cell] = []
        seen: dict[str, dict[str, str]] = {}
        for combo in itertools.product(*axes.values()):
            labels = {axis: value.label for axis, value in zip(axes, combo)}
            overrides = dict(fixed)
            for value in combo:
                for key, val in value.overrides.items():
                    overrides.pop(key, None)  # re-insert so the order shows precedence
                    overrides[key] = val
            cell_id = "__".join(_id_part(axis, value.label) for axis, value in zip(axes, combo))
            if cell_id in seen:
                raise SweepSpecError(
                    f"{self._where()}: cells {seen[cell_id]} and {labels} get the same id {cell_id!r}; "
                    "give their axis values distinct labels"
                )
            seen[cell_id] = labels
            cells.append(Cell(cell_id, labels, overrides, tuple(v.needs for v in combo if v.needs)))
        return cells

    def row_label(self, labels: dict[str, str]) -> str:
        return ROW_SEPARATOR.join(labels[axis] for axis in self.report.rows)

    def _check_scale(self, scale: str) -> None:
        if scale not in self.scales:
            raise SweepSpecError(f"{self._where()}: unknown scale {scale!r}; this sweep has {sorted(self.scales)}")

    def _where(self) -> str:
        return str(self.path) if self.path else self.name


def _id_part(axis: str, label: str) -> str:
    part = UNSAFE_ID_CHARS.sub("-", label).strip("-")
    # Bare numbers (seeds, rates) get the axis name so ids read "seed42", not "42".
    if re.fullmatch(r"[0-9.eE+-]+", part):
        part = f"{axis}{part}"
    return part


def load_sweep(path: str | Path) -> Sweep:
    """Parse and validate a sweep file; raises :class:`SweepSpecError` naming the bad key."""
    path = Path(path)
    if not path.is_file():
        raise SweepSpecError(f"sweep file not found: {path}")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # noqa: BLE001  (YAML syntax errors, a scalar file, unreadable bytes)
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SweepSpecError(f"{where}: not a valid sweep file ({type(err).__name__}: {reason})") from None
    return parse_sweep(raw, path=path)


def parse_sweep(raw: Any, path: Path | None = None) -> Sweep:
    """Build a :class:`Sweep` from the plain mapping of a sweep file."""
    where = str(path) if path else "<sweep>"
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where}: a sweep file must be a mapping")
    _no_unknown(raw, TOP_LEVEL_KEYS, where)
    name = str(raw.get("name") or (path.stem if path else "sweep"))

    axes_raw = raw.get("axes")
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise SweepSpecError(f"{where}: 'axes' must be a non-empty mapping axis -> list of values")
    axes = {str(axis): _parse_axis(axis, values, f"{where}: axes.{axis}") for axis, values in axes_raw.items()}

    fixed = _parse_overrides(raw.get("fixed") or {}, f"{where}: fixed")

    scales_raw = raw.get("scales")
    if not isinstance(scales_raw, dict) or not {"full", "mini"} <= set(scales_raw):
        raise SweepSpecError(f"{where}: 'scales' must define at least 'full' and 'mini'")
    scales: dict[str, dict[str, Any]] = {}
    for scale, body in scales_raw.items():
        body = body or {}
        at = f"{where}: scales.{scale}"
        if not isinstance(body, dict):
            raise SweepSpecError(f"{at} must be a mapping")
        _no_unknown(body, SCALE_KEYS, at)
        scale_axes = {}
        for axis, values in (body.get("axes") or {}).items():
            if axis not in axes:
                raise SweepSpecError(f"{at}.axes.{axis}: not an axis of this sweep ({sorted(axes)}); scales keep the grid shape")
            scale_axes[axis] = _parse_axis(axis, values, f"{at}.axes.{axis}")
        select = body.get("select") or {}
        if not isinstance(select, dict):
            raise SweepSpecError(f"{at}.select must map axis -> list of labels to keep")
        for axis, labels in select.items():
            if axis not in axes:
                raise SweepSpecError(f"{at}.select.{axis}: not an axis of this sweep ({sorted(axes)})")
            known = [v.label for v in scale_axes.get(axis, axes[axis])]
            if not isinstance(labels, list) or not labels or any(str(label) not in known for label in labels):
                raise SweepSpecError(f"{at}.select.{axis} must be a non-empty list of labels from {known} (got {labels!r})")
        scales[str(scale)] = {
            "description": body.get("description", ""),
            "fixed": _parse_overrides(body.get("fixed") or {}, f"{at}.fixed"),
            "axes": scale_axes,
            "select": {str(axis): [str(label) for label in labels] for axis, labels in select.items()},
        }

    report = _parse_report(raw.get("report"), axes, scales, f"{where}: report")
    sweep = Sweep(
        name=name,
        title=str(raw.get("title") or name),
        paper=str(raw.get("paper") or ""),
        axes=axes,
        fixed=fixed,
        scales=scales,
        report=report,
        path=path,
        search=parse_search(raw.get("search"), axes, scales, where),
    )
    _check_report_labels(sweep, where)
    sweep.claims = _parse_claims(raw.get("claims"), sweep, f"{where}: claims")
    for scale in scales:  # surface id collisions at load time, not at launch
        sweep.cells(scale)
    return sweep


def parse_search(raw: Any, axes: dict, scales: dict, where: str) -> Any:
    from regbench.sweep.search import parse_search as parse  # the search owns its format

    return parse(raw, axes, scales, where)


def _no_unknown(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise SweepSpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _parse_overrides(mapping: Any, where: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise SweepSpecError(f"{where} must be a mapping of override key -> value")
    for key in mapping:
        if not isinstance(key, str) or not OVERRIDE_KEY.match(key) or key == "hydra" or key.startswith("hydra."):
            raise SweepSpecError(
                f"{where}: {key!r} is not a plain config key (e.g. 'trainer.max_steps' or 'regularizer'); "
                "put hydra/launcher choices and hydra.* settings on the command line"
            )
    return dict(mapping)


def _parse_axis(axis: str, values: Any, where: str) -> list[AxisValue]:
    if not OVERRIDE_KEY.match(str(axis)):
        raise SweepSpecError(f"{where}: axis names must be plain config keys")
    if not isinstance(values, list) or not values:
        raise SweepSpecError(f"{where} must be a non-empty list")
    parsed: list[AxisValue] = []
    for i, value in enumerate(values):
        at = f"{where}[{i}]"
        if isinstance(value, dict):
            _no_unknown(value, AXIS_VALUE_KEYS, at)
            if "label" not in value:
                raise SweepSpecError(f"{at}: a mapping value needs a 'label'")
            label = str(value["label"])
            overrides = _parse_overrides(value.get("overrides") or {}, f"{at}.overrides")
            grid = _parse_overrides(value.get("grid") or {}, f"{at}.grid")
            needs = value.get("needs") or ""
            if not isinstance(needs, str):
                raise SweepSpecError(f"{at}.needs must be a sentence saying what the row waits for")
            parsed.extend(_expand_value_grid(label, overrides, grid, at, needs.strip()))
        elif isinstance(value, (list, tuple)):
            parsed.append(_multi_select(axis, list(value), at))
        else:
            parsed.append(AxisValue(_label(value), {axis: value}))
    labels = [v.label for v in parsed]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise SweepSpecError(f"{where}: duplicate labels {duplicates}")
    return parsed


def _multi_select(axis: str, options: list[Any], where: str) -> AxisValue:
    """``[mixout, wdecay]``: several options of a group at once (``regularizer=[mixout,wdecay]``),
    labelled ``mixout+wdecay``."""
    if not options or any(isinstance(o, (list, tuple, dict)) for o in options):
        raise SweepSpecError(f"{where}: a list value selects several options of a group (e.g. [mixout, wdecay]); "
                             "it cannot be empty or nested (use a mapping with 'grid' for parameter grids)")
    repeated = sorted({_label(o) for o in options if options.count(o) > 1})
    if repeated:
        raise SweepSpecError(f"{where}: {repeated[0]!r} is listed twice in {options}")
    return AxisValue("+".join(_label(o) for o in options), {axis: list(options)})


def _expand_value_grid(label: str, overrides: dict, grid: dict, where: str, needs: str = "") -> list[AxisValue]:
    """``{label: vld, overrides: {...}, grid: {regularizer.very_large_dropout.p: [0.5, 0.9]}}`` -> one value
    per grid point, labelled ``vld p=0.5``."""
    if not grid:
        return [AxisValue(label, overrides, needs)]
    for key, options in grid.items():
        if not isinstance(options, list) or not options:
            raise SweepSpecError(f"{where}.grid.{key} must be a non-empty list")
    out = []
    for point in itertools.product(*grid.values()):
        assignment = dict(zip(grid, point))
        suffix = " ".join(f"{key.rsplit('.', 1)[-1]}={_label(v)}" for key, v in assignment.items())
        out.append(AxisValue(f"{label} {suffix}", {**overrides, **assignment}, needs))
    return out


def _label(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _parse_report(raw: Any, axes: dict, scales: dict, where: str) -> ReportSpec:
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where} must be a mapping (rows, column, metric, ...)")
    _no_unknown(raw, REPORT_KEYS, where)
    rows = raw.get("rows")
    column = raw.get("column", "task")
    if not isinstance(rows, list) or not rows or any(r not in axes for r in rows):
        raise SweepSpecError(f"{where}.rows must be a non-empty list of axis names from {sorted(axes)}")
    if column not in axes or column in rows:
        raise SweepSpecError(f"{where}.column must be an axis name not in rows (got {column!r})")
    source = raw.get("source", "best")
    if source not in ("best", "final"):
        raise SweepSpecError(f"{where}.source must be 'best' or 'final' (got {source!r})")
    default_scale = float(raw.get("scale", 100))
    digits = raw.get("digits", 1)
    if not isinstance(digits, int) or not 0 <= digits <= 6:
        raise SweepSpecError(f"{where}.digits must be an integer in [0, 6] (got {digits!r})")

    column_labels = {v.label for s in ["__base__", *scales] for v in _column_values(axes, scales, s, column)}
    metric_raw = raw.get("metric")
    if metric_raw is None:
        raise SweepSpecError(f"{where}.metric is required: a metric key, or a mapping column label -> metric")
    metrics: dict[str, MetricSpec] = {}
    for label in sorted(column_labels):
        entry = metric_raw.get(label) if isinstance(metric_raw, dict) and _is_per_column(metric_raw) else metric_raw
        if entry is None:
            raise SweepSpecError(f"{where}.metric: no metric for column {label!r}")
        metrics[label] = _parse_metric(entry, default_scale, f"{where}.metric.{label}")
    if isinstance(metric_raw, dict) and _is_per_column(metric_raw):
        unknown = set(metric_raw) - column_labels
        if unknown:
            raise SweepSpecError(f"{where}.metric: {sorted(unknown)} are not {column} labels of this sweep")

    chance_raw = raw.get("chance") or {}
    if isinstance(chance_raw, (int, float)):
        chance = {label: float(chance_raw) for label in column_labels}
    elif isinstance(chance_raw, dict):
        unknown = set(chance_raw) - column_labels
        if unknown:
            raise SweepSpecError(f"{where}.chance: {sorted(unknown)} are not {column} labels of this sweep")
        chance = {str(k): float(v) for k, v in chance_raw.items()}
    else:
        raise SweepSpecError(f"{where}.chance must be a number or a mapping column label -> threshold")

    paper = _parse_paper(raw.get("paper"), f"{where}.paper")
    average = raw.get("average", False)
    if not isinstance(average, bool):
        raise SweepSpecError(f"{where}.average must be true or false (got {average!r})")
    return ReportSpec(rows=list(rows), column=column, metrics=metrics, source=source, digits=digits,
                      chance=chance, paper=paper, average=average)


def _column_values(axes: dict, scales: dict, scale: str, column: str) -> list[AxisValue]:
    if scale == "__base__":
        return axes[column]
    return scales[scale]["axes"].get(column, axes[column])


def _is_per_column(metric_raw: dict) -> bool:
    # {keys: [...], scale: 1} describes one metric for all columns; anything else maps labels.
    return not ({"keys", "key"} & set(metric_raw))


def _parse_metric(entry: Any, default_scale: float, where: str) -> MetricSpec:
    if isinstance(entry, str):
        return MetricSpec((entry,), default_scale)
    if isinstance(entry, list) and entry and all(isinstance(k, str) for k in entry):
        return MetricSpec(tuple(entry), default_scale)
    if isinstance(entry, dict) and ("keys" in entry or "key" in entry):
        keys = entry.get("keys", entry.get("key"))
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        return MetricSpec(keys, float(entry.get("scale", default_scale)))
    raise SweepSpecError(f"{where}: a metric is a key like 'validation/accuracy', a list of keys (averaged), or {{keys, scale}}")


def _entries(raw: list, allowed: set[str], where: str, what: str):
    """(where, mapping) for each item of a list of mappings with known keys, or a clear error."""
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise SweepSpecError(f"{at} must be a mapping ({what})")
        _no_unknown(item, allowed, at)
        yield at, item


def _parse_paper(raw: Any, where: str) -> list[PaperSeries]:
    """``report.paper``: a list of series ``{stat, source, values: {row: {column: number}}}``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SweepSpecError(
            f"{where} must be a list of series {{stat: mean|max|chance_runs|reported, source: '...', "
            "values: {row label: {column label: number or null}}}} (an empty list when no number is verified)"
        )
    series = []
    for at, item in _entries(raw, PAPER_SERIES_KEYS, where, "stat, source and values"):
        stat = item.get("stat")
        if stat not in PAPER_STATS:
            raise SweepSpecError(f"{at}.stat must be one of {list(PAPER_STATS)} (got {stat!r})")
        source = item.get("source")
        if not isinstance(source, str) or not source.strip():
            raise SweepSpecError(f"{at}.source is required: where in the paper (or elsewhere) the numbers are from")
        values = item.get("values")
        if not isinstance(values, dict) or any(not isinstance(v, dict) for v in values.values()):
            raise SweepSpecError(f"{at}.values must map row label -> {{column label: number or null}}")
        parsed: dict[str, dict[str, float | None]] = {}
        for row, cols in values.items():
            parsed[str(row)] = {}
            for col, value in cols.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise SweepSpecError(f"{at}.values.{row!r}.{col}: {value!r} is not a number or null")
                parsed[str(row)][str(col)] = None if value is None else float(value)
        flags = {k: item.get(k, False) for k in ("read_off_figure", "secondary")}
        for key, flag in flags.items():
            if not isinstance(flag, bool):
                raise SweepSpecError(f"{at}.{key} must be true or false (got {flag!r})")
        out_of = item.get("out_of")
        if out_of is not None and (not isinstance(out_of, int) or isinstance(out_of, bool) or out_of < 1):
            raise SweepSpecError(f"{at}.out_of must be a positive integer (restarts behind a count), got {out_of!r}")
        series.append(PaperSeries(stat, source.strip(), parsed, flags["read_off_figure"], flags["secondary"], out_of))
    return series


def _check_report_labels(sweep: Sweep, where: str) -> None:
    """Paper numbers must name rows/columns the full-scale grid really has (catches typos)."""
    full_cells = sweep.cells("full")
    rows = {sweep.row_label(c.labels) for c in full_cells}
    columns = {c.labels[sweep.report.column] for c in full_cells}
    for series in sweep.report.paper:
        for row, cols in series.values.items():
            if row not in rows:
                raise SweepSpecError(f"{where}: report.paper ({series.stat}) row {row!r} is not a full-scale row; "
                                     f"rows are {sorted(rows)}")
            unknown = set(cols) - columns
            if unknown:
                raise SweepSpecError(f"{where}: report.paper ({series.stat}) {row!r}: {sorted(unknown)} are not "
                                     "full-scale columns")


def _labels_of(value: Any, where: str) -> tuple[str, ...]:
    labels = [value] if isinstance(value, str) else value
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise SweepSpecError(f"{where} must be a label or a non-empty list of labels")
    return tuple(labels)


def _parse_claims(raw: Any, sweep: Sweep, where: str) -> list[Claim]:
    """``claims``: the paper's qualitative statements, each checkable on the grid's rows."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SweepSpecError(f"{where} must be a list of claims")
    row_axes = sweep.report.rows
    column = sweep.report.column
    all_columns = {v.label for scale in sweep.scales for v in sweep.axes_for(scale)[column]} | {
        v.label for v in sweep.axes[column]}
    claims = []
    for at, item in _entries(raw, CLAIM_KEYS, where, "text, source, kind, axis, ..."):
        for key in ("text", "source"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise SweepSpecError(f"{at}.{key} is required (a non-empty string)")
        kind = item.get("kind")
        if kind not in CLAIM_KINDS:
            raise SweepSpecError(f"{at}.kind must be one of {list(CLAIM_KINDS)} (got {kind!r})")
        axis = item.get("axis")
        if axis not in row_axes:
            raise SweepSpecError(f"{at}.axis must be one of the report's row axes {row_axes} (got {axis!r})")
        known = {v.label for scale in sweep.scales for v in sweep.axes_for(scale)[axis]} | {v.label for v in sweep.axes[axis]}
        fields: dict[str, Any] = {}
        needed = {"better": ("a", "b"), "fewer_chance_runs": ("a", "b"), "order": ("order",), "value": ("a",)}[kind]
        for key in ("a", "b", "order"):
            if key in item and key not in needed:
                raise SweepSpecError(f"{at}.{key}: not used by kind {kind!r} (it takes {list(needed)})")
        for key in needed:
            if key not in item:
                raise SweepSpecError(f"{at}.{key} is required for kind {kind!r}")
            labels = _labels_of(item[key], f"{at}.{key}")
            unknown = [label for label in labels if label not in known]
            if unknown:
                raise SweepSpecError(f"{at}.{key}: {unknown} are not {axis} labels of this sweep ({sorted(known)})")
            fields[key] = labels
        if kind == "order" and len(fields["order"]) < 2:
            raise SweepSpecError(f"{at}.order needs at least two labels")
        if kind == "fewer_chance_runs" and not sweep.report.chance:
            raise SweepSpecError(f"{at}: kind fewer_chance_runs needs report.chance thresholds")
        columns = item.get("columns")
        if columns is not None:
            columns = _labels_of(columns, f"{at}.columns")
            unknown = [c for c in columns if c not in all_columns]
            if unknown:
                raise SweepSpecError(f"{at}.columns: {unknown} are not {column} labels of this sweep")
        each = item.get("each", False)
        if not isinstance(each, bool):
            raise SweepSpecError(f"{at}.each must be true or false")
        numbers = {}
        for key in ("paper_effect", "paper_value"):
            value = item.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise SweepSpecError(f"{at}.{key} must be a number (table units)")
            numbers[key] = None if value is None else float(value)
        if kind == "value" and numbers["paper_value"] is None:
            raise SweepSpecError(f"{at}.paper_value is required for kind 'value'")
        scales = item.get("scales")
        if scales is not None:
            scales = _labels_of(scales, f"{at}.scales")
            unknown = [s for s in scales if s not in sweep.scales]
            if unknown:
                raise SweepSpecError(f"{at}.scales: {unknown} are not scales of this sweep ({sorted(sweep.scales)})")
        claims.append(Claim(text=item["text"].strip(), source=item["source"].strip(), kind=kind, axis=axis,
                            columns=columns, each=each, scales=scales, **fields, **numbers))
    return claims
