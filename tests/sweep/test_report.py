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
    "axes": {"regularizer": ["none", "tlm", "mixout"], "task": ["glue/rte", "glue/mrpc"], "seed": [1, 2, 3]},
    "scales": {"full": {}, "mini": {"description": "a tiny budget",
                                    "fixed": {"trainer.max_epochs": 2, "data.train_limit": 250}}},
    "report": {
        "rows": ["regularizer"],
        "column": "task",
        "metric": {"glue/rte": "validation/accuracy", "glue/mrpc": "validation/f1"},
        "chance": {"glue/rte": 0.53},
        "paper": [
            {"stat": "mean", "source": "Table 1", "values": {"tlm": {"glue/rte": 70.0}, "none": {"glue/rte": None},
                                                             "mixout": {"glue/rte": 64.0, "glue/mrpc": 89.0}}},
            {"stat": "max", "source": "Table 1", "values": {"tlm": {"glue/rte": 75.0}, "mixout": {"glue/rte": 74.0}}},
            {"stat": "chance_runs", "source": "Figure 3, dots counted", "read_off_figure": True, "out_of": 20,
             "values": {"none": {"glue/rte": 12}, "mixout": {"glue/rte": 7}}},
            {"stat": "reported", "source": "a user quoting the paper in issue #30", "secondary": True,
             "values": {"tlm": {"glue/mrpc": 87.3}}},
        ],
    },
    "claims": [
        {"text": "mixout beats none on the average", "source": "abstract", "kind": "better", "axis": "regularizer",
         "a": "mixout", "b": "none", "paper_effect": 0.5},
        {"text": "none beats mixout on every task", "source": "made up", "kind": "better", "axis": "regularizer",
         "a": "none", "b": "mixout", "each": True},
        {"text": "mixout > none > tlm on RTE", "source": "Table 1", "kind": "order", "axis": "regularizer",
         "order": ["mixout", "none", "tlm"], "columns": ["glue/rte"]},
        {"text": "mixout has fewer chance runs than tlm on RTE", "source": "Figure 3", "kind": "fewer_chance_runs",
         "axis": "regularizer", "a": "mixout", "b": "tlm", "columns": ["glue/rte"]},
        {"text": "tlm reaches 90 on RTE", "source": "abstract", "kind": "value", "axis": "regularizer", "a": "tlm",
         "columns": ["glue/rte"], "paper_value": 90.0, "scales": ["full"]},
    ],
}

# (regularizer, task, seed) -> (status, best value); absent = never ran
RESULTS = {
    ("none", "rte", 1): ("ok", 0.60),
    ("none", "rte", 2): ("ok", 0.70),
    ("none", "rte", 3): ("ok", 0.65),
    ("none", "mrpc", 1): ("ok", 0.80),
    ("none", "mrpc", 2): ("ok", 0.81),
    ("none", "mrpc", 3): ("ok", 0.82),
    ("tlm", "rte", 1): ("ok", 0.72),
    ("tlm", "rte", 2): ("ok", 0.74),
    ("tlm", "rte", 3): ("ok", 0.50),  # at or below chance (0.53)
    ("tlm", "mrpc", 1): ("running", None),
    ("tlm", "mrpc", 2): ("failed", None),
    ("tlm", "mrpc", 3): ("ok", 0.86),
    ("mixout", "rte", 1): ("ok", 0.75),
    ("mixout", "rte", 2): ("ok", 0.76),
    ("mixout", "rte", 3): ("ok", 0.78),
    ("mixout", "mrpc", 1): ("ok", 0.88),
    ("mixout", "mrpc", 2): ("ok", 0.89),
    ("mixout", "mrpc", 3): ("ok", 0.90),
}

IMAGES = {"results": "toy_mini.png", "curves": "toy_mini_curves.png"}

EXPECTED_MD = """\
# Toy table

Paper: Someone et al. 2020

**Scale `mini`**: a tiny budget. rows: 3 (regularizer); columns: glue/rte, glue/mrpc; runs per cell: 3 (seed 1, 2, 3); backbone: config default; epochs: 2; train rows: 250; eval rows: all; batch: config default; max length: config default; lr: config default; 18 runs in all.

Metric source `best` (× 100); mean ± sample std over seed; n = finished runs, failed = runs with status failed, missing = not run or unfinished, chance = finished runs at or below the chance threshold (included in n and mean); s/run = mean wall time of a run (`wall_time_s`); — = no value.

Wall time: 350 s (5.8 min) summed over the runs' `wall_time_s` (16 finished runs, 21 s per run; failed runs 20 s): the table's time on one worker running one cell at a time.

## Summary

| regularizer | glue/rte | glue/mrpc |
|---|---|---|
| none | 65.0 ± 5.0 | 81.0 ± 1.0 |
| tlm | 65.3 ± 13.3 | 86.0 |
| mixout | 76.3 ± 1.5 | 89.0 ± 1.0 |

![Per-task results: one dot per run, mean ± std, chance line, paper markers](toy_mini.png)

## The paper's numbers

Mean (max), Table 1:

| regularizer | glue/rte | glue/mrpc |
|---|---|---|
| none | — | — |
| tlm | 70.0 (75.0) | — |
| mixout | 64.0 (74.0) | 89.0 |

Paper chance runs (read off the paper's figure): Figure 3, dots counted. ≈ = read off a figure, not a number the paper states:

| regularizer | glue/rte | glue/mrpc |
|---|---|---|
| none | ≈12/20 | — |
| mixout | ≈7/20 | — |

Secondary numbers (not from the paper itself): a user quoting the paper in issue #30:

| regularizer | glue/rte | glue/mrpc |
|---|---|---|
| tlm | — | 87.3 |

## Claims

The paper's claims, checked on these runs. Effect = mean over paired runs (same seed) of the difference; [95% paired t-interval]; sd = spread of the per-run differences; verdict: agree / disagree when the interval excludes 0 on the claimed / other side (a `value` claim: contains / misses the paper's number), cannot tell when it covers 0 or n < 3. Several checks agree only if all agree. Rule: `regbench/sweep/claims.py`.

1. mixout beats none on the average (abstract; paper: +0.5): **agree**
   - mixout − none, mean over glue/rte, glue/mrpc: +9.67 [+3.80, +15.54], sd 2.36, n = 3 seeds → agree
2. none beats mixout on every task (made up): **disagree**
   - none − mixout, glue/rte: -11.33 [-23.07, +0.41], sd 4.73, n = 3 seeds → cannot tell
   - none − mixout, glue/mrpc: -8.00 [-8.00, -8.00], sd 0.00, n = 3 seeds → disagree
3. mixout > none > tlm on RTE (Table 1): **cannot tell**
   - mixout − none, glue/rte: +11.33 [-0.41, +23.07], sd 4.73, n = 3 seeds → cannot tell
   - none − tlm, glue/rte: -0.33 [-34.78, +34.12], sd 13.87, n = 3 seeds → cannot tell
4. mixout has fewer chance runs than tlm on RTE (Figure 3): **cannot tell**
   - chance runs of tlm − of mixout, summed over glue/rte: +0.33 [-1.10, +1.77], sd 0.58, n = 3 seeds; chance runs mixout 0/3, tlm 1/3 → cannot tell
5. tlm reaches 90 on RTE (abstract; paper: 90): **cannot tell**: not checked at scale mini, only at full (the claim is a number of the paper's own protocol).

## Cells vs. paper

| regularizer | task | metric | mean | std | max | n | failed | chance | missing | s/run | paper mean | Δ | paper max | paper chance runs (read off the paper's figure) | paper (secondary) | Δ |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| none | glue/rte | validation/accuracy | 65.0 | 5.0 | 70.0 | 3 | 0 | 0 | 0 | 20 | — | — | — | ≈12/20 | — | — |
| none | glue/mrpc | validation/f1 | 81.0 | 1.0 | 82.0 | 3 | 0 | 0 | 0 | 20 | — | — | — | — | — | — |
| tlm | glue/rte | validation/accuracy | 65.3 | 13.3 | 74.0 | 3 | 0 | 1 | 0 | 20 | 70.0 | -4.7 | 75.0 | — | — | — |
| tlm | glue/mrpc | validation/f1 | 86.0 | — | 86.0 | 1 | 1 | 0 | 1 | 30 | — | — | — | — | 87.3 | -1.3 |
| mixout | glue/rte | validation/accuracy | 76.3 | 1.5 | 78.0 | 3 | 0 | 0 | 0 | 20 | 64.0 | +12.3 | 74.0 | ≈7/20 | — | — |
| mixout | glue/mrpc | validation/f1 | 89.0 | 1.0 | 90.0 | 3 | 0 | 0 | 0 | 20 | 89.0 | +0.0 | — | — | — | — |

## Learning curves

Dev metric after every epoch's validation, mean ± std over the runs that reached it, from `metrics.json` history (within one run's schedule: epoch e of an E-epoch run).

![Learning curves](toy_mini_curves.png)

| regularizer | task | epoch 1 | epoch 2 |
|---|---|---|---|
| none | glue/rte | 55.0 ± 5.0 | 65.0 ± 5.0 |
| none | glue/mrpc | 71.0 ± 1.0 | 81.0 ± 1.0 |
| tlm | glue/rte | 55.3 ± 13.3 | 65.3 ± 13.3 |
| tlm | glue/mrpc | 76.0 | 86.0 |
| mixout | glue/rte | 66.3 ± 1.5 | 76.3 ± 1.5 |
| mixout | glue/mrpc | 79.0 ± 1.0 | 89.0 ± 1.0 |

## Failed runs

| run | error |
|---|---|
| tlm__glue-mrpc__seed2 | RuntimeError: x |
"""


def write_results(sweep_dir: Path, results=RESULTS) -> None:
    for (reg, task, seed), (status, value) in results.items():
        run_dir = sweep_dir / f"{reg}__glue-{task}__seed{seed}"
        run_dir.mkdir(parents=True)
        key = "validation/accuracy" if task == "rte" else "validation/f1"
        metrics = {"status": status, "error": "RuntimeError: x" if status == "failed" else None, "seed": seed}
        if status in ("ok", "failed"):
            metrics["wall_time_s"] = 10.0 * seed
        if status == "ok":
            # `final` differs from `best` so a wrong source would show
            metrics.update(best={key: value, "validation/loss": 0.1}, final={key: value / 2},
                           history=[{"epoch": 0, "step": 4, key: value - 0.1}, {"epoch": 1, "step": 8, key: value}])
        (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep():
    return parse_sweep(SWEEP)


def test_markdown_of_a_known_results_set_matches_exactly(sweep, tmp_path):
    write_results(tmp_path)
    assert render_markdown(sweep, "mini", collect(sweep, "mini", tmp_path), IMAGES) == EXPECTED_MD


def test_report_numbers_equal_a_hand_aggregation(sweep, tmp_path):
    write_results(tmp_path)
    rows = list(csv.DictReader(io.StringIO(render_csv(sweep, collect(sweep, "mini", tmp_path)))))
    by_cell = {(r["regularizer"], r["task"]): r for r in rows}
    tlm_rte = [72.0, 74.0, 50.0]
    got = by_cell[("tlm", "glue/rte")]
    assert float(got["mean"]) == pytest.approx(sum(tlm_rte) / 3, abs=1e-9)
    assert float(got["std"]) == pytest.approx(math.sqrt(sum((v - sum(tlm_rte) / 3) ** 2 for v in tlm_rte) / 2), abs=1e-9)
    assert float(got["max"]) == pytest.approx(74.0)
    assert float(got["paper1_mean_diff"]) == pytest.approx(sum(tlm_rte) / 3 - 70.0, abs=1e-9)
    assert (got["n"], got["chance"], got["paper1_mean"], got["paper2_max"]) == ("3", "1", "70.0", "75.0")
    assert float(got["wall_s_per_run"]) == pytest.approx(20.0)  # seeds 1-3 ran 10, 20, 30 s
    assert by_cell[("mixout", "glue/rte")]["paper3_chance_runs_figure"] == "7.0"
    assert by_cell[("tlm", "glue/mrpc")]["paper4_reported_secondary_diff"] == repr(86.0 - 87.3)
    partial = by_cell[("tlm", "glue/mrpc")]
    assert (partial["mean"], partial["std"], partial["n"], partial["failed"], partial["missing"]) == ("86.0", "", "1", "1", "1")


def test_final_source_reads_the_last_validation(tmp_path):
    raw = json.loads(json.dumps(SWEEP))
    raw["report"]["source"] = "final"
    sweep = parse_sweep(raw)
    write_results(tmp_path)
    entry = collect(sweep, "mini", tmp_path)[0]
    assert entry.values == pytest.approx([30.0, 35.0, 32.5])


def test_learning_curves_come_from_the_history(sweep, tmp_path):
    write_results(tmp_path)
    entry = collect(sweep, "mini", tmp_path)[0]
    assert [r.history for r in entry.runs] == [[(1.0, pytest.approx(50.0)), (2.0, pytest.approx(60.0))],
                                               [(1.0, pytest.approx(60.0)), (2.0, pytest.approx(70.0))],
                                               [(1.0, pytest.approx(55.0)), (2.0, pytest.approx(65.0))]]


def test_missing_cells_are_never_zeros(sweep, tmp_path):
    entries = collect(sweep, "mini", tmp_path)  # nothing ran
    assert all(e.n == 0 and e.mean is None and e.missing == 3 for e in entries)
    md = render_markdown(sweep, "mini", entries)
    assert "| none | — | — |\n| tlm | — | — |" in md
    assert "| tlm | glue/rte | validation/accuracy | — | — | — | 0 | 0 | 0 | 3 | — | 70.0 | — | 75.0 | — | — | — |" in md
    assert "1. mixout beats none on the average (abstract; paper: +0.5): **cannot tell**" in md
    assert "mixout − none, mean over glue/rte, glue/mrpc: no paired runs, n = 0 seeds → cannot tell" in md


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
    raw["claims"] = [c for c in raw["claims"] if c["kind"] != "fewer_chance_runs"]  # needs chance thresholds
    write_results(tmp_path, {("none", "rte", 1): ("ok", 0.7)})
    entry = collect(parse_sweep(raw), "mini", tmp_path)[0]
    assert entry.values == pytest.approx([(0.7 + 0.1) / 2])
    assert entry.metric == "validation/accuracy + validation/loss"


def test_latex_escapes_and_keeps_the_numbers(sweep, tmp_path):
    write_results(tmp_path)
    tex = render_latex(sweep, "mini", collect(sweep, "mini", tmp_path))
    assert r"tlm & glue/rte & validation/accuracy & 65.3 & 13.3 & 74.0 & 3 & 0 & 1 & 0 & 20 & 70.0 & -4.7 & 75.0 & -- & -- & -- \\" in tex
    assert r"mixout & glue/rte & validation/accuracy & 76.3 & 1.5 & 78.0 & 3 & 0 & 0 & 0 & 20 & 64.0 & +12.3 & 74.0 & $\approx$7/20" in tex
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
    assert (out_dir / "toy_mini.csv").read_text().startswith(
        "regularizer,task,metric,mean,std,max,n,failed,chance,missing,wall_s_per_run,paper1_mean,paper1_mean_diff,"
        "paper2_max,paper3_chance_runs_figure,paper4_reported_secondary,paper4_reported_secondary_diff\n")
    assert (out_dir / "toy_mini.tex").read_text().startswith(r"\begin{table}")
    for name in ("toy_mini.png", "toy_mini_curves.png"):  # both embedded in the Markdown
        png = (out_dir / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "| tlm | 65.3 ± 13.3 | 86.0 |" in capsys.readouterr().out


def test_average_column_needs_every_column(tmp_path):
    raw = json.loads(json.dumps(SWEEP))
    raw["report"]["average"] = True
    sweep = parse_sweep(raw)
    write_results(tmp_path)
    md = render_markdown(sweep, "mini", collect(sweep, "mini", tmp_path))
    assert "| regularizer | glue/rte | glue/mrpc | average |" in md
    assert "| none | 65.0 ± 5.0 | 81.0 ± 1.0 | 73.0 |" in md  # (65.0 + 81.0) / 2
    assert "| tlm | 65.3 ± 13.3 | 86.0 | 75.7 |" in md  # mean of the column means, whatever their n

    nothing = parse_sweep(raw)
    md = render_markdown(nothing, "mini", collect(nothing, "mini", tmp_path / "empty"))
    assert "| tlm | — | — | — |" in md  # no column mean: no average


def test_stale_runs_are_left_out_of_the_tables_and_flagged(sweep, tmp_path, capsys):
    import yaml

    from regbench.sweep.launch import write_fingerprint

    write_results(tmp_path)
    cells = {c.id: c for c in sweep.cells("mini")}
    # every run records its cell's fingerprint: the report is exactly the one without fingerprints
    for cell_id, cell in cells.items():
        if (tmp_path / cell_id).is_dir():
            write_fingerprint(cell, tmp_path / cell_id)
    assert render_markdown(sweep, "mini", collect(sweep, "mini", tmp_path), IMAGES) == EXPECTED_MD

    # the sweep file changed for tlm (e.g. its rate): the tlm runs on disk are stale
    raw = json.loads(json.dumps(SWEEP))
    raw["axes"]["regularizer"] = ["none", {"label": "tlm", "overrides": {"regularizer": "tlm", "regularizer.tlm.p": 0.8}},
                                  "mixout"]
    changed = parse_sweep(raw)
    entries = collect(changed, "mini", tmp_path)
    by_key = {(e.row, e.column): e for e in entries}
    tlm_rte = by_key[(("tlm",), "glue/rte")]
    assert (tlm_rte.n, tlm_rte.mean, tlm_rte.missing, tlm_rte.chance) == (0, None, 3, 0)
    assert [s[0] for s in tlm_rte.stale] == ["tlm__glue-rte__seed1", "tlm__glue-rte__seed2", "tlm__glue-rte__seed3"]
    none_rte = by_key[(("none",), "glue/rte")]
    assert (none_rte.n, none_rte.mean, none_rte.stale) == (3, pytest.approx(65.0), [])
    md = render_markdown(changed, "mini", entries)
    assert "**Warning:** 6 run(s) are stale" in md and "| tlm | — | — |" in md
    assert "## Stale runs (not in the tables)" in md and "| tlm__glue-mrpc__seed2 | " in md
    assert "| tlm | glue/rte | validation/accuracy | — | — | — | 0 | 0 | 0 | 3 | — | 70.0 | — | 75.0 | — | — | — |" in md

    sweep_file = tmp_path / "changed.yaml"
    sweep_file.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    assert cli_main(["report", str(sweep_file), "--scale", "mini", "--sweep-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: 6 run(s) are stale") and "tlm__glue-rte__seed1" in err
