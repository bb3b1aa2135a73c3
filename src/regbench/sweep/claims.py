"""The paper's claims (``claims:`` of a sweep file) checked on our runs.

Rule (documented in ``sweeps/README.md``, "Claims"): the unit of replication is the aggregated
axes' labels of a run (the seed, i.e. one random restart; the same seed means the same head
initialisation and data order in every row, so runs are paired by it). For each unit present on
both sides and in every column of the check, the per-unit difference ``d`` is computed:

- ``better``: mean over the check's columns (and over the labels of a side) of ours, ``a − b``;
- ``fewer_chance_runs``: chance-level runs of ``b`` minus those of ``a``, summed over the columns
  (averaged over the labels of a side), so a positive ``d`` means ``a`` failed less;
- ``value``: our per-unit mean of ``a`` (compared with the paper's absolute number);
- ``order``: one ``better`` check per adjacent pair.

Effect = mean of ``d``; spread = its sample std; 95% interval = paired t-interval
``mean ± t(0.975, n−1)·sd/√n``. Verdict: **agree** when the interval lies on the claimed side of 0
(``value``: contains the paper's number), **disagree** when it lies on the other side (``value``: does
not contain it), **cannot tell** when it covers 0 or when n < 3. A claim with several checks (one per
column with ``each``, one per pair for ``order``) agrees only if every check agrees and disagrees if
any check disagrees. Each value of the other row axes (e.g. each backbone) is checked separately.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from regbench.sweep.spec import Claim, Sweep

if TYPE_CHECKING:  # report imports this module; only the type is needed here
    from regbench.sweep.report import Entry

AGREE, DISAGREE, CANNOT_TELL = "agree", "disagree", "cannot tell"
MIN_UNITS = 3
CONFIDENCE = 0.95


@dataclass
class Check:
    """One comparison of a claim on one group of rows: the per-unit differences and their summary."""

    description: str
    differences: list[float]
    target: float = 0.0          # value claims: the paper's number; else 0
    kind: str = "better"
    counts: str = ""             # fewer_chance_runs: "a k/N, b k/N"
    note: str = ""               # why nothing could be computed

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def effect(self) -> float | None:
        return statistics.fmean(self.differences) if self.differences else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.differences) if self.n >= 2 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.n < 2:
            return None
        from scipy.stats import t

        half = t.ppf(0.5 + CONFIDENCE / 2, self.n - 1) * self.sd / math.sqrt(self.n)
        return self.effect - half, self.effect + half

    @property
    def verdict(self) -> str:
        if self.n < MIN_UNITS or self.interval is None:
            return CANNOT_TELL
        low, high = self.interval
        if self.kind == "value":
            return AGREE if low <= self.target <= high else DISAGREE
        if low > 0:
            return AGREE
        if high < 0:
            return DISAGREE
        return CANNOT_TELL


@dataclass
class GroupResult:
    """A claim's checks on one value of the other row axes (``group``; empty when there are none)."""

    group: tuple[str, ...]
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return combine([c.verdict for c in self.checks])


@dataclass
class ClaimResult:
    claim: Claim
    groups: list[GroupResult] = field(default_factory=list)
    skipped: str = ""  # why the claim is not checked at this scale

    @property
    def verdict(self) -> str:
        return CANNOT_TELL if self.skipped else combine([g.verdict for g in self.groups])


def combine(verdicts: list[str]) -> str:
    """Every check agrees -> agree; any disagrees -> disagree; otherwise cannot tell."""
    if not verdicts:
        return CANNOT_TELL
    if DISAGREE in verdicts:
        return DISAGREE
    return AGREE if all(v == AGREE for v in verdicts) else CANNOT_TELL


def evaluate_claims(sweep: Sweep, scale: str, entries: list[Entry]) -> list[ClaimResult]:
    """Check every claim of ``sweep`` on the collected entries of ``scale`` (rule: module docstring)."""
    spec = sweep.report
    by_key = {(e.row, e.column): e for e in entries}
    columns_here = list(dict.fromkeys(e.column for e in entries))
    rows_here = list(dict.fromkeys(e.row for e in entries))
    results = []
    for claim in sweep.claims:
        result = ClaimResult(claim)
        results.append(result)
        if claim.scales is not None and scale not in claim.scales:
            result.skipped = (f"not checked at scale {scale}, only at {', '.join(claim.scales)} (the claim is a "
                              "number of the paper's own protocol)")
            continue
        wanted = list(claim.columns) if claim.columns is not None else columns_here
        columns = [c for c in wanted if c in columns_here]
        if not columns:
            result.skipped = f"none of its columns ({', '.join(wanted)}) is in the {scale} grid"
            continue
        k = spec.rows.index(claim.axis)
        labels_here = {row[k] for row in rows_here}
        absent = [label for label in (*claim.a, *claim.b, *claim.order) if label not in labels_here]
        if absent:
            result.skipped = f"{', '.join(absent)}: not in the {scale} grid"
            continue
        groups = list(dict.fromkeys(row[:k] + row[k + 1:] for row in rows_here))
        column_sets = [[c] for c in columns] if claim.each else [columns]
        for group in groups:
            group_result = GroupResult(group)
            result.groups.append(group_result)

            def row_of(label: str) -> tuple[str, ...]:
                return group[:k] + (label,) + group[k:]

            for cols in column_sets:
                where = cols[0] if len(cols) == 1 else "mean over " + ", ".join(cols)
                if claim.kind == "order":
                    for a, b in zip(claim.order, claim.order[1:]):
                        group_result.checks.append(_better((a,), (b,), cols, row_of, by_key, where))
                elif claim.kind == "better":
                    group_result.checks.append(_better(claim.a, claim.b, cols, row_of, by_key, where))
                elif claim.kind == "fewer_chance_runs":
                    group_result.checks.append(_fewer_chance(claim.a, claim.b, cols, row_of, by_key))
                else:
                    group_result.checks.append(_value(claim, cols, row_of, by_key, where))
    return results


def _side_values(labels, cols, row_of, by_key, read) -> dict[tuple[str, ...], float]:
    """unit -> mean over the side's labels and the columns of ``read(run)``; only complete units."""
    per_unit: dict[tuple[str, ...], list[float]] = {}
    expected = len(labels) * len(cols)
    for label in labels:
        for col in cols:
            entry = by_key.get((row_of(label), col))
            for run in entry.runs if entry else []:
                value = read(run)
                if value is not None:
                    per_unit.setdefault(run.unit, []).append(value)
    return {u: statistics.fmean(v) for u, v in per_unit.items() if len(v) == expected}


def _name(labels: tuple[str, ...]) -> str:
    return labels[0] if len(labels) == 1 else "mean of (" + ", ".join(labels) + ")"


def _better(a, b, cols, row_of, by_key, where) -> Check:
    xa = _side_values(a, cols, row_of, by_key, lambda r: r.value)
    xb = _side_values(b, cols, row_of, by_key, lambda r: r.value)
    units = [u for u in xa if u in xb]
    return Check(f"{_name(a)} − {_name(b)}, {where}", [xa[u] - xb[u] for u in units])


def _fewer_chance(a, b, cols, row_of, by_key) -> Check:
    def count(run) -> float | None:
        return float(run.chance)

    xa = _side_values(a, cols, row_of, by_key, count)
    xb = _side_values(b, cols, row_of, by_key, count)
    units = [u for u in xa if u in xb]
    # side values are means over labels x columns: scale back to a count summed over the columns
    n_cols = len(cols)
    diffs = [(xb[u] - xa[u]) * n_cols for u in units]
    total_a = sum(xa[u] * n_cols for u in units)
    total_b = sum(xb[u] * n_cols for u in units)
    runs = len(units) * n_cols
    counts = f"chance runs {_name(a)} {total_a:g}/{runs}, {_name(b)} {total_b:g}/{runs}"
    return Check(f"chance runs of {_name(b)} − of {_name(a)}, summed over {', '.join(cols)}", diffs,
                 kind="fewer_chance_runs", counts=counts)


def _value(claim: Claim, cols, row_of, by_key, where) -> Check:
    xa = _side_values(claim.a, cols, row_of, by_key, lambda r: r.value)
    return Check(f"{_name(claim.a)}, {where}", list(xa.values()), target=claim.paper_value, kind="value")
