"""Claims checked on runs (regbench.sweep.claims): pairing by seed, groups per other row axis,
value claims, the n >= 3 rule, claims whose rows are not in the grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from regbench.sweep.claims import AGREE, CANNOT_TELL, DISAGREE, evaluate_claims
from regbench.sweep.report import collect
from regbench.sweep.spec import parse_sweep


def sweep_with(claims, seeds=(1, 2, 3), mini_select=None):
    mini = {"axes": {"backbone": ["small", "tiny"]}}
    if mini_select:
        mini["select"] = mini_select
    return parse_sweep({
        "name": "c", "axes": {"backbone": ["big"], "regularizer": ["a", "b", "c"], "task": ["t1", "t2"], "seed": list(seeds)},
        "scales": {"full": {}, "mini": mini},
        "report": {"rows": ["backbone", "regularizer"], "column": "task", "metric": "m"},
        "claims": claims,
    })


def write(sweep_dir: Path, values: dict) -> None:
    """values: (backbone, regularizer, task, seed) -> metric (raw units)."""
    for (bb, reg, task, seed), value in values.items():
        run_dir = sweep_dir / f"{bb}__{reg}__{task}__seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"status": "ok", "best": {"m": value}}))


def test_each_backbone_is_checked_separately_on_seed_paired_differences(tmp_path):
    claim = {"text": "a beats b", "source": "s", "kind": "better", "axis": "regularizer", "a": "a", "b": "b"}
    sweep = sweep_with([claim])
    values = {}
    for seed, (da, db) in enumerate([(0.10, 0.01), (0.12, 0.02), (0.11, 0.03)], start=1):
        for task in ("t1", "t2"):
            values[("small", "a", task, seed)] = 0.5 + da
            values[("small", "b", task, seed)] = 0.5 + db
            values[("tiny", "a", task, seed)] = 0.5 - da  # the other backbone: the opposite
            values[("tiny", "b", task, seed)] = 0.5 + db
    write(tmp_path, values)
    (result,) = evaluate_claims(sweep, "mini", collect(sweep, "mini", tmp_path))
    small, tiny = result.groups
    assert small.group == ("small",) and tiny.group == ("tiny",)
    diffs = [9.0, 10.0, 8.0]  # (a - b) x 100 per seed, the same on both tasks
    assert small.checks[0].differences == pytest.approx(diffs)
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert small.checks[0].interval == pytest.approx((9.0 - half, 9.0 + half))
    assert (small.verdict, tiny.verdict, result.verdict) == (AGREE, DISAGREE, DISAGREE)


def test_fewer_than_three_paired_seeds_cannot_tell(tmp_path):
    claim = {"text": "a beats b", "source": "s", "kind": "better", "axis": "regularizer", "a": "a", "b": "b",
             "columns": ["t1"]}
    sweep = sweep_with([claim], mini_select={"backbone": ["small"]})
    # seed 3 of b failed to finish: only seeds 1 and 2 pair up, however large the effect
    write(tmp_path, {("small", "a", "t1", 1): 0.9, ("small", "a", "t1", 2): 0.9, ("small", "a", "t1", 3): 0.9,
                     ("small", "b", "t1", 1): 0.1, ("small", "b", "t1", 2): 0.1})
    (result,) = evaluate_claims(sweep, "mini", collect(sweep, "mini", tmp_path))
    check = result.groups[0].checks[0]
    assert (check.n, check.effect, result.verdict) == (2, pytest.approx(80.0), CANNOT_TELL)


def test_value_claims_compare_the_interval_with_the_papers_number(tmp_path):
    def claim(value):
        return {"text": "a reaches x", "source": "s", "kind": "value", "axis": "regularizer", "a": "a",
                "columns": ["t1"], "paper_value": value}

    sweep = sweep_with([claim(60.0), claim(70.0)], mini_select={"backbone": ["small"]})
    write(tmp_path, {("small", "a", "t1", s): v for s, v in zip((1, 2, 3), (0.59, 0.60, 0.61))})
    inside, outside = evaluate_claims(sweep, "mini", collect(sweep, "mini", tmp_path))
    assert (inside.verdict, outside.verdict) == (AGREE, DISAGREE)


def test_a_claim_about_rows_outside_the_scale_says_so(tmp_path):
    claim = {"text": "c beats b", "source": "s", "kind": "better", "axis": "regularizer", "a": "c", "b": "b"}
    sweep = sweep_with([claim], mini_select={"regularizer": ["a", "b"]})
    (result,) = evaluate_claims(sweep, "mini", collect(sweep, "mini", tmp_path))
    assert result.verdict == CANNOT_TELL and result.skipped == "c: not in the mini grid"
