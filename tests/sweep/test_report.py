"""Tables and plot from hand-written metrics.json files (regbench.sweep.report)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from regbench.sweep.cli import main as cli_main
from regbench.sweep.report import ReportError, collect, render_csv, render_latex, render_markdown
from regbench.sweep.spec import parse_sweep

SWEEP = {
    "name": "toy",
    "title": "Toy table",
    "paper": "Someone et al. 2020",
    "axes": {"regularizer": ["none", "tlm"], "task": ["glue/rte", "glue/mrpc"], "seed": [1, 2, 3]},
    "scales": {"full": {}, "mini": {}},
    "report": {
        "rows": ["regularizer"],
        "column": "task",
        "metric": {"glue/rte": "validation/accuracy", "glue/mrpc": "validation/f1"},
        "chance": {"glue/rte": 0.53},
        "paper": {"tlm": {"glue/rte": 70.0}, "none": {"glue/rte": None}},
    },
}

# (regularizer, task, seed) -> (status, best value); absent = never ran
RESULTS = {
    ("none", "rte", 1): ("ok", 0.60),
    ("none", "rte", 2): ("ok", 0.70),
    ("none", "rte", 3): ("ok", 0.65),
    ("none", "mrpc", 1): ("ok", 0.80),
    ("none", "mrpc", 2): ("failed", None),
    ("tlm", "rte", 1): ("ok", 0.72),
    ("tlm", "rte", 2): ("ok", 0.74),
    ("tlm", "rte", 3): ("ok", 0.50),  # at or below chance (0.53)
    ("tlm", "mrpc", 1): ("running", None),
}

EXPECTED_MD = """\
# Toy table

Paper: Someone et al. 2020

Scale `mini`; metric source `best` (× 100); mean ± sample std over seed; n = finished runs, failed = runs with status failed, missing = not run or unfinished, chance = finished runs at or below the chance threshold (included in n and mean); — = no value.

## Summary

| regularizer | glue/rte | glue/mrpc |
|---|---|---|
| none | 65.0 ± 5.0 | 80.0 |
| tlm | 65.3 ± 13.3 | — |

## Cells vs. paper

| regularizer | task | metric | mean | std | max | n | failed | chance | missing | paper | Δ |
|---|---|---|---|---|---|---|---|---|---|---|---|
| none | glue/rte | validation/accuracy | 65.0 | 5.0 | 70.0 | 3 | 0 | 0 | 0 | — | — |
| none | glue/mrpc | validation/f1 | 80.0 | — | 80.0 | 1 | 1 | 0 | 1 | — | — |
| tlm | glue/rte | validation/accuracy | 65.3 | 13.3 | 74.0 | 3 | 0 | 1 | 0 | 70.0 | -4.7 |
| tlm | glue/mrpc | validation/f1 | — | — | — | 0 | 0 | 0 | 3 | — | — |

## Failed runs

| run | error |
|---|---|
| none__glue-mrpc__seed2 | RuntimeError: x |
"""


def write_results(sweep_dir: Path, results=RESULTS) -> None:
    for (reg, task, seed), (status, value) in results.items():
        run_dir = sweep_dir / f"{reg}__glue-{task}__seed{seed}"
        run_dir.mkdir(parents=True)
        key = "validation/accuracy" if task == "rte" else "validation/f1"
        metrics = {"status": status, "error": "RuntimeError: x" if status == "failed" else None, "seed": seed}
        if status == "ok":
            # `final` differs from `best` so a wrong source would show
            metrics.update(best={key: value, "validation/loss": 0.1}, final={key: value / 2})
        (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep():
    return parse_sweep(SWEEP)


def test_markdown_of_a_known_results_set_matches_exactly(sweep, tmp_path):
    write_results(tmp_path)
    assert render_markdown(sweep, "mini", collect(sweep, "mini", tmp_path)) == EXPECTED_MD


def test_report_numbers_equal_a_hand_aggregation(sweep, tmp_path):
    write_results(tmp_path)
    rows = list(csv.DictReader(io.StringIO(render_csv(sweep, collect(sweep, "mini", tmp_path)))))
    by_cell = {(r["regularizer"], r["task"]): r for r in rows}
    tlm_rte = [72.0, 74.0, 50.0]
    got = by_cell[("tlm", "glue/rte")]
    assert float(got["mean"]) == pytest.approx(sum(tlm_rte) / 3, abs=1e-9)
    assert float(got["std"]) == pytest.approx(math.sqrt(sum((v - sum(tlm_rte) / 3) ** 2 for v in tlm_rte) / 2), abs=1e-9)
    assert float(got["max"]) == pytest.approx(74.0)
    assert float(got["diff"]) == pytest.approx(sum(tlm_rte) / 3 - 70.0, abs=1e-9)
    assert (got["n"], got["chance"], got["paper"]) == ("3", "1", "70.0")
    missing = by_cell[("tlm", "glue/mrpc")]
    assert (missing["mean"], missing["std"], missing["n"], missing["missing"]) == ("", "", "0", "3")


def test_final_source_reads_the_last_validation(tmp_path):
    raw = json.loads(json.dumps(SWEEP))
    raw["report"]["source"] = "final"
    sweep = parse_sweep(raw)
    write_results(tmp_path)
    entry = collect(sweep, "mini", tmp_path)[0]
    assert entry.values == pytest.approx([30.0, 35.0, 32.5])


def test_missing_cells_are_never_zeros(sweep, tmp_path):
    entries = collect(sweep, "mini", tmp_path)  # nothing ran
    assert all(e.n == 0 and e.mean is None and e.missing == 3 for e in entries)
    md = render_markdown(sweep, "mini", entries)
    assert "| none | — | — |\n| tlm | — | — |" in md
    assert "| tlm | glue/rte | validation/accuracy | — | — | — | 0 | 0 | 0 | 3 | 70.0 | — |" in md


def test_nan_metric_counts_as_chance_and_stays_out_of_the_mean(sweep, tmp_path):
    results = {("none", "rte", 1): ("ok", 0.6), ("none", "rte", 2): ("ok", float("nan"))}
    write_results(tmp_path, results)
    entry = collect(sweep, "mini", tmp_path)[0]
    assert (entry.n, entry.chance, entry.mean) == (1, 1, pytest.approx(60.0))


def test_a_finished_run_without_the_metric_is_a_clear_error(sweep, tmp_path):
    run_dir = tmp_path / "none__glue-rte__seed1"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"status": "ok", "best": {"validation/f1": 0.5}}))
    with pytest.raises(ReportError, match=r"no numeric \['validation/accuracy'\]; it has \['validation/f1'\]"):
        collect(sweep, "mini", tmp_path)


def test_metric_lists_are_averaged(tmp_path):
    raw = json.loads(json.dumps(SWEEP))
    raw["report"]["metric"] = {"keys": ["validation/accuracy", "validation/loss"], "scale": 1}
    raw["report"]["chance"] = {}
    write_results(tmp_path, {("none", "rte", 1): ("ok", 0.7)})
    entry = collect(parse_sweep(raw), "mini", tmp_path)[0]
    assert entry.values == pytest.approx([(0.7 + 0.1) / 2])
    assert entry.metric == "validation/accuracy + validation/loss"


def test_latex_escapes_and_keeps_the_numbers(sweep, tmp_path):
    write_results(tmp_path)
    tex = render_latex(sweep, "mini", collect(sweep, "mini", tmp_path))
    assert r"tlm & glue/rte & validation/accuracy & 65.3 & 13.3 & 74.0 & 3 & 0 & 1 & 0 & 70.0 & -4.7 \\" in tex
    assert r"65.0 $\pm$ 5.0" in tex and r"$\Delta$" in tex and "—" not in tex
    assert tex.count(r"\begin{tabular}") == 2


def test_cli_report_writes_markdown_csv_latex_and_png(tmp_path, capsys):
    import yaml

    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP, sort_keys=False, allow_unicode=True))
    sweep_dir = tmp_path / "runs"
    write_results(sweep_dir)
    rc = cli_main(["report", str(sweep_file), "--scale", "mini", "--sweep-dir", str(sweep_dir)])
    assert rc == 0
    out_dir = sweep_dir / "report"
    assert (out_dir / "toy_mini.md").read_text() == EXPECTED_MD
    assert (out_dir / "toy_mini.csv").read_text().startswith("regularizer,task,metric,mean,std,max,n,failed,chance,missing,paper,diff\n")
    assert (out_dir / "toy_mini.tex").read_text().startswith(r"\begin{table}")
    png = (out_dir / "toy_mini.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "| tlm | 65.3 ± 13.3 | — |" in capsys.readouterr().out


def test_average_column_needs_every_column(tmp_path):
    raw = json.loads(json.dumps(SWEEP))
    raw["report"]["average"] = True
    sweep = parse_sweep(raw)
    write_results(tmp_path)
    md = render_markdown(sweep, "mini", collect(sweep, "mini", tmp_path))
    assert "| regularizer | glue/rte | glue/mrpc | average |" in md
    assert "| none | 65.0 ± 5.0 | 80.0 | 72.5 |" in md  # (65.0 + 80.0) / 2
    assert "| tlm | 65.3 ± 13.3 | — | — |" in md  # mrpc missing: no average


def test_stale_runs_are_left_out_of_the_tables_and_flagged(sweep, tmp_path, capsys):
    import yaml

    from regbench.sweep.launch import write_fingerprint

    write_results(tmp_path)
    cells = {c.id: c for c in sweep.cells("mini")}
    # every run records its cell's fingerprint: the report is exactly the one without fingerprints
    for cell_id, cell in cells.items():
        if (tmp_path / cell_id).is_dir():
            write_fingerprint(cell, tmp_path / cell_id)
    assert render_markdown(sweep, "mini", collect(sweep, "mini", tmp_path)) == EXPECTED_MD

    # the sweep file changed for tlm (e.g. its rate): the tlm runs on disk are stale
    raw = json.loads(json.dumps(SWEEP))
    raw["axes"]["regularizer"] = ["none", {"label": "tlm", "overrides": {"regularizer": "tlm", "regularizer.rate": 0.8}}]
    changed = parse_sweep(raw)
    entries = collect(changed, "mini", tmp_path)
    by_key = {(e.row, e.column): e for e in entries}
    tlm_rte = by_key[(("tlm",), "glue/rte")]
    assert (tlm_rte.n, tlm_rte.mean, tlm_rte.missing, tlm_rte.chance) == (0, None, 3, 0)
    assert [s[0] for s in tlm_rte.stale] == ["tlm__glue-rte__seed1", "tlm__glue-rte__seed2", "tlm__glue-rte__seed3"]
    none_rte = by_key[(("none",), "glue/rte")]
    assert (none_rte.n, none_rte.mean, none_rte.stale) == (3, pytest.approx(65.0), [])
    md = render_markdown(changed, "mini", entries)
    assert "**Warning:** 4 run(s) are stale" in md and "| tlm | — | — |" in md
    assert "## Stale runs (not in the tables)" in md and "| tlm__glue-mrpc__seed1 | " in md
    assert "| tlm | glue/rte | validation/accuracy | — | — | — | 0 | 0 | 0 | 3 | 70.0 | — |" in md

    sweep_file = tmp_path / "changed.yaml"
    sweep_file.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    assert cli_main(["report", str(sweep_file), "--scale", "mini", "--sweep-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: 4 run(s) are stale") and "tlm__glue-rte__seed1" in err
