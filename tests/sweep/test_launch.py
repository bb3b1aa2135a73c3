"""Launching sweeps through Hydra multirun: plans, resume, failure isolation (regbench.sweep.launch).

The end-to-end tests here drive the fake training app of conftest.py (same Hydra shape as
train.py, no model), so they check the sweep layer's mechanics in a few seconds; the real
train.py end to end is in test_e2e_mini.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from regbench.sweep.cli import main as cli_main
from regbench.sweep.launch import (
    HydraApp,
    cell_config,
    describe_plan,
    execute,
    format_override,
    plan_launch,
    read_state,
)
from regbench.sweep.spec import parse_sweep


def toy_sweep(regularizers=None, seeds=(1, 2)):
    return parse_sweep({
        "name": "toy",
        "axes": {
            "regularizer": regularizers or ["none", {"label": "tlm", "overrides": {"regularizer": "tlm", "regularizer.rate": 0.5}}],
            "task": ["glue/rte", "glue/mrpc"],
            "seed": list(seeds),
        },
        "fixed": {"trainer.max_steps": 3},
        "scales": {"full": {}, "mini": {"fixed": {"trainer.max_steps": 1}}},
        "report": {"rows": ["regularizer"], "column": "task", "metric": "validation/accuracy"},
    })


def write_metrics(run_dir: Path, status: str, **extra) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({"status": status, **extra}))


def test_cell_config_selects_groups_in_the_defaults_list_and_sets_values(fake_app):
    cell = toy_sweep().cells("full")[5]
    config = cell_config(cell, HydraApp(fake_app / "train.py"))
    assert config == {
        "defaults": [{"override /regularizer": "tlm"}, {"override /task": "glue/rte"}, "_self_"],
        "trainer": {"max_steps": 3},
        "regularizer": {"rate": 0.5},
        "seed": 2,
        "hydra": {"sweep": {"subdir": "tlm__glue-rte__seed2"}},
    }


def test_group_missing_from_primary_defaults_is_added_not_overridden(fake_app):
    (fake_app / "conf" / "optim").mkdir()
    sweep = toy_sweep(regularizers=[{"label": "sgd", "overrides": {"optim": "sgd"}}])
    config = cell_config(sweep.cells("full")[0], HydraApp(fake_app / "train.py"))
    assert config["defaults"][0] == {"/optim": "sgd"}


@pytest.mark.parametrize(
    "value, text",
    [(None, "k=null"), (True, "k=true"), (0.5, "k=0.5"), (3, "k=3"), ("glue/rte", "k=glue/rte"),
     ([1, "a"], "k=[1,a]"), ("a b", "k='a b'"), ("1e-5x", "k='1e-5x'"), ("${x.y}", "k=${x.y}")],
)
def test_override_values_are_written_in_hydra_grammar(value, text):
    assert format_override("k", value) == text


def test_plan_launches_only_missing_and_failed_cells(fake_app, tmp_path):
    sweep = toy_sweep()
    sweep_dir = tmp_path / "runs"
    ids = [c.id for c in sweep.cells("full")]
    write_metrics(sweep_dir / ids[0], "ok")
    write_metrics(sweep_dir / ids[1], "failed", error="RuntimeError: x")
    write_metrics(sweep_dir / ids[2], "running")
    (sweep_dir / ids[3]).mkdir()
    (sweep_dir / ids[3] / "metrics.json").write_text("{not json")
    plan = plan_launch(sweep, "full", sweep_dir, HydraApp(fake_app / "train.py"), ["trainer.max_steps=2"])
    assert [c.id for c in plan.pending] == ids[1:]
    assert f"+sweep_cell={','.join(ids[1:])}" in plan.command
    assert plan.command[-3:] == [f"hydra.sweep.dir={sweep_dir.resolve()}", "raise_on_failure=false", "trainer.max_steps=2"]
    assert read_state(sweep_dir / ids[3]).status == "failed"


def test_the_sweep_owns_its_output_dirs(fake_app, tmp_path):
    with pytest.raises(ValueError, match="--sweep-dir"):
        plan_launch(toy_sweep(), "full", tmp_path, HydraApp(fake_app / "train.py"), ["hydra.sweep.dir=/elsewhere"])


def test_wandb_runs_share_a_group_per_sweep_and_scale(fake_app, tmp_path):
    plan = plan_launch(toy_sweep(), "mini", tmp_path, HydraApp(fake_app / "train.py"), ["logger=wandb"])
    first = plan.pending[0]
    assert plan.cell_configs[first.id]["logger"] == {"wandb": {"group": "toy-mini", "name": first.id}}
    plain = plan_launch(toy_sweep(), "mini", tmp_path, HydraApp(fake_app / "train.py"), [])
    assert "logger" not in plain.cell_configs[first.id]


def test_dry_run_prints_the_jobs_and_launches_nothing(fake_app, tmp_path, capsys, launched):
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none", "tlm"], "task": ["glue/rte"], "seed": [1]},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    }, sort_keys=False))
    sweep_dir = tmp_path / "runs"
    rc = cli_main(["run", str(sweep_file), "--dry-run", "--project-dir", str(fake_app), "--sweep-dir", str(sweep_dir), "seed=5"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 to launch" in out
    assert "+sweep_cell=none__glue-rte__seed1,tlm__glue-rte__seed1" in out
    assert f"train.py regularizer=tlm task=glue/rte seed=1 raise_on_failure=false hydra.run.dir={sweep_dir}/tlm__glue-rte__seed1 seed=5" in out
    assert not sweep_dir.exists() and launched() == []


def run_toy(fake_app, sweep, sweep_dir, *overrides):
    plan = plan_launch(sweep, "mini", sweep_dir, HydraApp(fake_app / "train.py"), ["hydra/job_logging=disabled", *overrides])
    return plan, execute(plan, echo=lambda _: None)


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_failing_cell_is_recorded_and_the_others_complete_then_resume_relaunches_only_it(fake_app, tmp_path, launched, launcher):
    seeds = (1, 2) if launcher == "basic" else (1,)  # submitit polls its jobs: keep it small
    sweep = toy_sweep(regularizers=["none", {"label": "boom", "overrides": {"regularizer": "tlm", "regularizer.explode": True}}], seeds=seeds)
    sweep_dir = tmp_path / "runs"
    plan, summary = run_toy(fake_app, sweep, sweep_dir, f"hydra/launcher={launcher}")
    ids = [c.id for c in plan.cells]
    assert sorted(launched()) == sorted(ids)
    assert summary.ok == [i for i in ids if i.startswith("none")]
    assert set(summary.failed) == {i for i in ids if i.startswith("boom")}
    assert all(err == "RuntimeError: deliberate failure" for err in summary.failed.values())
    assert summary.missing == []

    # Resume: one finished cell lost its result; only it and the failed cells are launched again.
    (sweep_dir / ids[0] / "metrics.json").unlink()
    before = len(launched())
    plan2, summary2 = run_toy(fake_app, sweep, sweep_dir, f"hydra/launcher={launcher}")
    assert sorted(launched()[before:]) == sorted([ids[0], *summary.failed])
    assert summary2.skipped == len(ids) - 1 - len(summary.failed)
    metrics = json.loads((sweep_dir / ids[0] / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["output_dir"] == str((sweep_dir / ids[0]).resolve())


def test_a_finished_sweep_launches_nothing(fake_app, tmp_path, launched):
    sweep = toy_sweep(seeds=(1,))
    run_toy(fake_app, sweep, tmp_path / "runs")
    n = len(launched())
    plan, summary = run_toy(fake_app, sweep, tmp_path / "runs")
    assert plan.pending == [] and len(launched()) == n and summary.all_ok
    assert "0 to launch" in describe_plan(plan)


def test_a_job_that_dies_is_marked_failed_and_unstarted_cells_stay_missing(fake_app, tmp_path, launched):
    sweep = toy_sweep(regularizers=[{"label": "crash", "overrides": {"regularizer": "tlm", "regularizer.hard_crash": True}}, "none"], seeds=(1,))
    plan, summary = run_toy(fake_app, sweep, tmp_path / "runs")
    first = plan.cells[0].id
    assert launched() == [first]  # the basic launcher dies with its job
    assert summary.returncode != 0
    assert summary.failed[first].startswith("JobCrashed: the job exited without final metrics")
    assert summary.missing == [c.id for c in plan.cells[1:]]
    # the runner kept what the job had written
    assert json.loads((tmp_path / "runs" / first / "metrics.json").read_text())["task"] == "rte"


def test_cli_run_returns_nonzero_when_a_cell_failed(fake_app, tmp_path, capsys):
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none", {"label": "boom", "overrides": {"regularizer": "tlm", "regularizer.explode": True}}],
                 "task": ["glue/rte"], "seed": [1]},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    }, sort_keys=False))
    rc = cli_main(["run", str(sweep_file), "--project-dir", str(fake_app), "--sweep-dir", str(tmp_path / "runs"), "hydra/job_logging=disabled"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1/2 ok, 1 failed, 0 missing" in out
    assert "failed boom__glue-rte__seed1: RuntimeError: deliberate failure" in out


def test_only_restricts_the_launch_to_matching_cells(fake_app, tmp_path, capsys):
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none", "tlm"], "task": ["glue/rte", "glue/mrpc"], "seed": [1, 2]},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    }, sort_keys=False))
    common = ["run", str(sweep_file), "--dry-run", "--project-dir", str(fake_app), "--sweep-dir", str(tmp_path / "runs")]
    assert cli_main([*common, "--only", "task=glue/mrpc", "--only", "seed=2"]) == 0
    out = capsys.readouterr().out
    assert "+sweep_cell=none__glue-mrpc__seed2,tlm__glue-mrpc__seed2 " in out
    assert cli_main([*common, "--only", "task=glue/sst2"]) == 2
    assert "not a label of 'task'" in capsys.readouterr().err
