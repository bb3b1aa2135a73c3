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
            "regularizer": regularizers or ["none", {"label": "tlm", "overrides": {"regularizer": "tlm", "regularizer.tlm.p": 0.5}}],
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
        "regularizer": {"tlm": {"p": 0.5}},
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
    assert (f"train.py regularizer=tlm task=glue/rte seed=1 sweep.name=toy sweep.scale=full sweep.cell=tlm__glue-rte__seed1 "
            f"raise_on_failure=false hydra.run.dir={sweep_dir}/tlm__glue-rte__seed1 seed=5") in out
    assert not sweep_dir.exists() and launched() == []


def run_toy(fake_app, sweep, sweep_dir, *overrides):
    plan = plan_launch(sweep, "mini", sweep_dir, HydraApp(fake_app / "train.py"), ["hydra/job_logging=disabled", *overrides])
    return plan, execute(plan, echo=lambda _: None)


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_failing_cell_is_recorded_and_the_others_complete_then_resume_relaunches_only_it(fake_app, tmp_path, launched, launcher):
    seeds = (1, 2) if launcher == "basic" else (1,)  # submitit polls its jobs: keep it small
    sweep = toy_sweep(regularizers=["none", {"label": "boom", "overrides": {"regularizer": "tlm", "regularizer.tlm.explode": True}}], seeds=seeds)
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
    sweep = toy_sweep(regularizers=[{"label": "crash", "overrides": {"regularizer": "tlm", "regularizer.tlm.hard_crash": True}}, "none"], seeds=(1,))
    plan, summary = run_toy(fake_app, sweep, tmp_path / "runs")
    first = plan.cells[0].id
    assert launched() == [first]  # the basic launcher dies with its job
    assert summary.returncode != 0
    assert summary.failed[first].startswith("JobCrashed: the job exited without final metrics")
    assert summary.missing == [c.id for c in plan.cells[1:]]
    # the runner kept what the job had written
    assert json.loads((tmp_path / "runs" / first / "metrics.json").read_text())["task"] == "rte"


def test_cells_that_cannot_run_here_are_recorded_failed_by_name_and_never_launched(fake_app, tmp_path, launched):
    """A row waiting for a method (``needs``) or naming an option that does not exist, alone or in a
    list of several, is refused with the reason; the runnable cells still run."""
    sweep = toy_sweep(regularizers=[
        "none",
        {"label": "later", "needs": "a regularizer still being written", "overrides": {"regularizer": "tlm"}},
        {"label": "absent", "overrides": {"regularizer": "nope"}},
        {"label": "pair", "overrides": {"regularizer": ["tlm", "nope2"]}},
    ], seeds=(1,))
    plan, summary = run_toy(fake_app, sweep, tmp_path / "runs")
    assert sorted(launched()) == ["none__glue-mrpc__seed1", "none__glue-rte__seed1"]
    failed = summary.failed
    assert failed["later__glue-rte__seed1"] == "NotAvailable: a regularizer still being written"
    assert failed["absent__glue-rte__seed1"].startswith("MissingConfigOption: regularizer=nope: no conf/regularizer/nope.yaml")
    assert failed["pair__glue-rte__seed1"].startswith(
        "MissingConfigOption: regularizer=[tlm,nope2]: no conf/regularizer/nope2.yaml (options: mixout, none, tlm)")
    assert len(failed) == 6 and summary.returncode == 0


def test_cli_run_returns_nonzero_when_a_cell_failed(fake_app, tmp_path, capsys):
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none", {"label": "boom", "overrides": {"regularizer": "tlm", "regularizer.tlm.explode": True}}],
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


# ----------------------------------------------------------------------------- stale cells


def edited(sweep_raw_changes: dict, seeds=(1,)):
    """The toy sweep with ``{"mini_fixed": {...}, "tlm_rate": x}`` edits, as a user would make them."""
    raw = {
        "name": "toy",
        "axes": {
            "regularizer": ["none", {"label": "tlm", "overrides": {"regularizer": "tlm", "regularizer.tlm.p": sweep_raw_changes.get("tlm_rate", 0.5)}}],
            "task": ["glue/rte", "glue/mrpc"],
            "seed": list(seeds),
        },
        "fixed": {"trainer.max_steps": 3},
        "scales": {"full": {}, "mini": {"fixed": sweep_raw_changes.get("mini_fixed", {"trainer.max_steps": 1})}},
        "report": {"rows": ["regularizer"], "column": "task", "metric": "validation/accuracy"},
    }
    return parse_sweep(raw)


def test_every_launched_cell_records_the_fingerprint_of_its_overrides(fake_app, tmp_path):
    from regbench.sweep.launch import FINGERPRINT_FILE, cell_fingerprint, read_fingerprint

    sweep = edited({})
    plan, summary = run_toy(fake_app, sweep, tmp_path / "runs")
    assert summary.all_ok
    for cell in plan.cells:
        record = json.loads((tmp_path / "runs" / cell.id / FINGERPRINT_FILE).read_text())
        assert record["fingerprint"] == read_fingerprint(tmp_path / "runs" / cell.id) == cell_fingerprint(cell)
        assert record["overrides"] == cell.overrides and record["cell"] == cell.id
    # the fingerprint is a function of the override values, not of their order or of the labels
    a, b = sweep.cells("mini")[0], edited({"mini_fixed": {"trainer.max_steps": 2}}).cells("mini")[0]
    assert a.id == b.id and cell_fingerprint(a) != cell_fingerprint(b)
    reordered = type(a)(a.id, a.labels, dict(reversed(list(a.overrides.items()))))
    assert cell_fingerprint(reordered) == cell_fingerprint(a)


def test_changing_a_fixed_override_relaunches_the_cells_fresh_never_from_their_old_checkpoint(fake_app, tmp_path, launched):
    sweep_dir = tmp_path / "runs"
    plan, summary = run_toy(fake_app, edited({}), sweep_dir)
    ids = [c.id for c in plan.cells]
    assert summary.all_ok and sorted(launched()) == sorted(ids)
    # one cell failed after saving a checkpoint under the old settings
    (sweep_dir / ids[1] / "checkpoints").mkdir()
    (sweep_dir / ids[1] / "checkpoints" / "last.ckpt").write_text("old weights")
    write_metrics(sweep_dir / ids[1], "failed", error="Preempted")

    changed = edited({"mini_fixed": {"trainer.max_steps": 2}})
    dry = plan_launch(changed, "mini", sweep_dir, HydraApp(fake_app / "train.py"))
    assert dry.stale == ids and [c.id for c in dry.pending] == ids
    text = describe_plan(dry)
    assert "0 done (skipped), 4 to launch (4 stale)" in text and f"stale {ids[0]}: " in text
    assert not (sweep_dir / f"{ids[0]}.stale-1").exists()  # planning moves nothing

    before = len(launched())
    plan2, summary2 = run_toy(fake_app, changed, sweep_dir)
    assert sorted(launched()[before:]) == sorted(ids) and summary2.all_ok and summary2.skipped == 0
    for cell_id in ids:
        fresh = json.loads((sweep_dir / cell_id / "metrics.json").read_text())
        old = json.loads((sweep_dir / f"{cell_id}.stale-1" / "metrics.json").read_text())
        assert fresh["train_steps"] == 2 and fresh["status"] == "ok"
        assert old.get("train_steps", 1) == 1
    assert not (sweep_dir / ids[1] / "checkpoints").exists()
    assert (sweep_dir / f"{ids[1]}.stale-1" / "checkpoints" / "last.ckpt").read_text() == "old weights"

    # changing it back makes the new runs stale in turn: they go to .stale-2, nothing is overwritten
    run_toy(fake_app, edited({}), sweep_dir)
    assert json.loads((sweep_dir / f"{ids[0]}.stale-2" / "metrics.json").read_text())["train_steps"] == 2
    assert json.loads((sweep_dir / ids[0] / "metrics.json").read_text())["train_steps"] == 1


def test_changing_one_axis_value_relaunches_only_its_cells(fake_app, tmp_path, launched):
    sweep_dir = tmp_path / "runs"
    run_toy(fake_app, edited({}), sweep_dir)
    before = len(launched())
    plan, summary = run_toy(fake_app, edited({"tlm_rate": 0.7}), sweep_dir)
    assert sorted(launched()[before:]) == ["tlm__glue-mrpc__seed1", "tlm__glue-rte__seed1"]
    assert plan.stale == ["tlm__glue-rte__seed1", "tlm__glue-mrpc__seed1"] and summary.skipped == 2
    assert summary.all_ok


def test_run_dirs_without_a_fingerprint_count_as_current_and_an_unreadable_one_as_stale(fake_app, tmp_path):
    from regbench.sweep.launch import FINGERPRINT_FILE

    sweep = edited({})
    ids = [c.id for c in sweep.cells("mini")]
    sweep_dir = tmp_path / "runs"
    for cell_id in ids:
        write_metrics(sweep_dir / cell_id, "ok")  # e.g. made before fingerprints were recorded
    (sweep_dir / ids[2] / FINGERPRINT_FILE).write_text("{broken")
    plan = plan_launch(sweep, "mini", sweep_dir, HydraApp(fake_app / "train.py"))
    assert plan.stale == [ids[2]] and [c.id for c in plan.pending] == [ids[2]]


# ----------------------------------------------------------------------------- data root


def test_data_root_sets_task_data_dir_per_task_unless_the_cell_sets_it(fake_app, tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    for folder in ("glue/RTE", "glue/MRPC"):
        (root / folder).mkdir(parents=True)
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none"],
                 "task": ["glue/rte", {"label": "glue/mrpc", "overrides": {"task": "glue/mrpc", "task.data_dir": "/mine/MRPC"}}],
                 "seed": [1]},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    }, sort_keys=False))
    sweep_dir = tmp_path / "runs"
    common = ["run", str(sweep_file), "--dry-run", "--project-dir", str(fake_app), "--sweep-dir", str(sweep_dir)]
    monkeypatch.delenv("REGBENCH_DATA", raising=False)
    assert cli_main([*common, "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"data root: {root}" in out and f"glue/rte -> {root}/glue/RTE" in out
    assert f"task=glue/rte seed=1 sweep.name=toy sweep.scale=full sweep.cell=none__glue-rte__seed1 task.data_dir={root}/glue/RTE raise_on_failure=false" in out
    assert "task=glue/mrpc task.data_dir=/mine/MRPC seed=1 sweep.name=toy sweep.scale=full sweep.cell=none__glue-mrpc__seed1 raise_on_failure=false" in out  # the sweep file's own wins
    assert f"{root}/glue/MRPC" not in out

    plan = plan_launch(load_toy(sweep_file), "full", sweep_dir, HydraApp(fake_app / "train.py"), data_root=root)
    assert plan.cell_configs["none__glue-rte__seed1"]["task"] == {"data_dir": str(root / "glue" / "RTE")}

    # the environment variable does the same; --data-root '' turns it off
    monkeypatch.setenv("REGBENCH_DATA", str(root))
    assert cli_main(common) == 0
    assert f"task.data_dir={root}/glue/RTE" in capsys.readouterr().out
    assert cli_main([*common, "--data-root", ""]) == 0
    assert "task.data_dir" not in capsys.readouterr().out.replace("task.data_dir=/mine/MRPC", "")
    # a root that does not exist is an argument error
    assert cli_main([*common, "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def load_toy(path: Path):
    from regbench.sweep.spec import load_sweep

    return load_sweep(path)


def test_data_root_names_a_task_it_has_no_folder_for(fake_app, tmp_path):
    (fake_app / "conf" / "task" / "mine").mkdir()
    (fake_app / "conf" / "task" / "mine" / "thing.yaml").write_text("# @package task\nname: thing\nbase: 0.5\n")
    sweep = parse_sweep({
        "axes": {"regularizer": ["none"], "task": ["mine/thing"], "seed": [1]},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    })
    with pytest.raises(ValueError, match="conf/task/mine/thing.yaml has no 'local_dir'.*set task.data_dir"):
        plan_launch(sweep, "mini", tmp_path / "runs", HydraApp(fake_app / "train.py"), data_root=tmp_path)


# ----------------------------------------------------------------------------- combined methods


def test_a_combination_of_methods_is_one_cell_named_after_all_of_them(fake_app, tmp_path, launched):
    """``regularizer: [[tlm, mixout]]`` selects both options of the group in one run; the cell id, the
    run dir and the run's own record show the full combination."""
    sweep = toy_sweep(regularizers=["none", ["tlm", "mixout"]], seeds=(1,))
    assert [c.id for c in sweep.cells("mini")][::2] == ["none__glue-rte__seed1", "tlm+mixout__glue-rte__seed1"]
    plan, summary = run_toy(fake_app, sweep, tmp_path / "runs")
    assert summary.all_ok
    record = read_state(tmp_path / "runs" / "tlm+mixout__glue-rte__seed1").metrics
    assert record["regularizer"] == "tlm+mixout"
    assert record["best"]["validation/accuracy"] == pytest.approx(0.6 + 0.9 / 10 + 0.01)  # tlm's p acted
    config = cell_config(sweep.cells("mini")[2], HydraApp(fake_app / "train.py"))
    assert config["defaults"][0] == {"override /regularizer": ["tlm", "mixout"]}


def test_a_method_listed_twice_or_missing_from_conf_is_refused(fake_app, tmp_path):
    from regbench.sweep.spec import SweepSpecError

    with pytest.raises(SweepSpecError, match="'tlm' is listed twice"):
        toy_sweep(regularizers=[["tlm", "tlm"]])
    plan = plan_launch(toy_sweep(regularizers=[["tlm", "nope"]], seeds=(1,)), "mini", tmp_path / "runs",
                       HydraApp(fake_app / "train.py"))
    assert all("no conf/regularizer/nope.yaml" in why for why in plan.unlaunchable.values())
