"""Where a sweep stands: `sweep status` (per-cell states, writes nothing) and the progress line of
`sweep run` (k/N done, failed, running, ETA from measured cell times)."""

from __future__ import annotations

import json
import os
import time

import yaml

from regbench.sweep.cli import main as cli_main
from regbench.sweep.launch import HydraApp, execute, plan_launch, write_fingerprint
from regbench.sweep.progress import Progress, cell_status
from tests.sweep.test_launch import toy_sweep, write_metrics


def test_status_reports_every_state_and_writes_nothing(fake_app, tmp_path, capsys):
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none", "tlm"], "task": ["glue/rte"], "seed": [1, 2, 3]},
        "fixed": {"trainer.max_steps": 3},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    }, sort_keys=False))
    runs = tmp_path / "runs"
    write_metrics(runs / "none__glue-rte__seed1", "ok", main_metric="validation/accuracy",
                  best={"validation/accuracy": 0.75})
    write_metrics(runs / "none__glue-rte__seed2", "failed", error="RuntimeError: boom")
    write_metrics(runs / "none__glue-rte__seed3", "running")
    stale = runs / "tlm__glue-rte__seed1"
    write_metrics(stale, "ok")
    (stale / "sweep_fingerprint.json").write_text(json.dumps({"fingerprint": "0000"}))
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))

    assert cli_main(["status", str(sweep_file), "--project-dir", str(fake_app), "--sweep-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "6 cells: 1 ok, 1 failed, 1 running, 2 missing, 1 stale" in out
    assert "ok       none__glue-rte__seed1  validation/accuracy=0.7500" in out
    assert "failed   none__glue-rte__seed2  RuntimeError: boom" in out
    assert "running  none__glue-rte__seed3  metrics.json written" in out
    assert "stale    tlm__glue-rte__seed1" in out and "missing  tlm__glue-rte__seed3" in out
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before  # no report, no file


def test_a_current_fingerprint_is_not_stale(tmp_path):
    cell = toy_sweep().cells("full")[0]
    write_fingerprint(cell, tmp_path / cell.id)
    write_metrics(tmp_path / cell.id, "ok")
    assert cell_status(cell, tmp_path).state == "ok"


def test_progress_counts_cells_finished_in_this_launch_and_estimates_from_their_times(tmp_path):
    cells = toy_sweep().cells("full")[:4]
    started = time.time() - 120
    old = tmp_path / cells[0].id
    write_metrics(old, "ok")  # finished before this launch: not counted as done now
    os.utime(old / "metrics.json", (started - 500, started - 500))
    write_metrics(tmp_path / cells[1].id, "ok")
    write_metrics(tmp_path / cells[2].id, "failed")
    write_metrics(tmp_path / cells[3].id, "running")
    lines = []
    progress = Progress(cells, tmp_path, started, lines.append, "toy/full")
    counts = progress.counts()
    assert counts == {"ok": 1, "failed": 1, "running": 1, "waiting": 1}
    # 2 cells done in 120 s: 60 s per cell, 2 left
    assert progress.line(counts, started + 120) == \
        "[toy/full] 2/4 done (1 failed), 1 running, 2m00s elapsed, ETA 2m00s (1m00s per cell)"
    progress.poll()
    progress.poll()
    assert len(lines) == 1  # printed on change only


def test_run_prints_progress_lines_while_the_multirun_runs(fake_app, tmp_path):
    sweep = toy_sweep(seeds=(1,))
    plan = plan_launch(sweep, "mini", tmp_path / "runs", HydraApp(fake_app / "train.py"), ["hydra/job_logging=disabled"])
    lines = []
    summary = execute(plan, echo=lines.append)
    assert summary.all_ok
    assert lines[-1].startswith("[toy/mini] 4/4 done (0 failed), 0 running")


def test_every_cell_knows_its_sweep_scale_and_cell_id(fake_app, tmp_path):
    sweep = toy_sweep(seeds=(1,))
    plan = plan_launch(sweep, "mini", tmp_path / "runs", HydraApp(fake_app / "train.py"))
    cell = plan.pending[0]
    assert plan.cell_configs[cell.id]["sweep"] == {"name": "toy", "scale": "mini", "cell": cell.id}
    # labels only: the fingerprint (what decides stale results) does not see them
    from regbench.sweep.launch import cell_fingerprint
    assert "sweep.name" not in cell.overrides and cell_fingerprint(cell) == cell_fingerprint(sweep.cells("mini")[0])
