"""Issue 13, items 1, 3 and 9: a run dir belongs to one config; `ok` means trained and finally evaluated."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import record


def _snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_run_dir_belongs_to_one_config(train, tiny_bert, tmp_path):
    """A reused dir gave seeds 5 and 6 the results of seeds 1 and 2 (resume=auto loaded the finished run,
    config.yaml was overwritten, status ok). Also item 9: resume=never, wall time, CSV log, backbone name."""
    import torch

    from regbench.run_dir import ConfigMismatchError

    run_dir = tmp_path / "run"
    train(run_dir, "seed=1")
    first = record(run_dir)
    assert first["backbone"] == str(tiny_bert) and first["backbone_path"] == str(tiny_bert)  # not "bert-base-cased"

    # another result-relevant config: refused, naming the keys, before anything in the dir changes
    before = _snapshot(run_dir)
    with pytest.raises(ConfigMismatchError) as refused:
        train(run_dir, "seed=5", "optim.lr=2e-3")
    assert "seed: 1 -> 5" in str(refused.value) and "optim.lr: 0.001 -> 0.002" in str(refused.value)
    assert "resume=never" in str(refused.value)
    assert _snapshot(run_dir) == before

    # keys that do not change results may differ: the run resumes (here: a finished run ends at once)
    first_csv = (run_dir / "csv" / "metrics.csv").read_text()
    (run_dir / "metrics.json").write_text(json.dumps({**first, "wall_time_s": 1000.0}))  # a long first segment
    train(run_dir, "seed=1", "data.num_workers=0", "checkpoint.every_n_train_steps=2", "raise_on_failure=false")
    again = record(run_dir)
    assert again["status"] == "ok" and again["resumes"][-1]["step"] == 6 and again["history"] == first["history"]
    assert again["config_fingerprint"] == first["config_fingerprint"]
    assert again["wall_time_s"] > 1000.0  # every segment counts, not only the last
    assert (run_dir / "csv" / "metrics.1.csv").read_text() == first_csv  # the earlier segment's log is kept

    # resume=never starts fresh: the previous run is moved aside whole, best.ckpt is the new run's
    train(run_dir, "seed=5", "resume=never")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no best-v1
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["regbench_fingerprint"]["config"]["seed"] == 5
    assert record(run_dir)["seed"] == 5 and "resumes" not in record(run_dir)
    assert record(tmp_path / "run.replaced-1")["seed"] == 1


@pytest.mark.slow
def test_a_checkpoint_of_another_config_does_not_continue_this_one(train, tmp_path):
    from regbench.run_dir import ConfigMismatchError

    train(tmp_path / "a", "seed=1")
    with pytest.raises(ConfigMismatchError, match=r"(?s)checkpoint .*last\.ckpt was made with another .*seed: 1 -> 2"):
        train(tmp_path / "b", "seed=2", f"resume={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}")
    assert record(tmp_path / "b")["status"] == "failed"


@pytest.mark.slow
def test_the_same_data_in_another_folder_is_the_same_run_other_data_is_not(train, glue_root, tmp_path):
    import shutil

    from regbench.run_dir import ConfigMismatchError

    moved = shutil.copytree(glue_root / "rte", tmp_path / "mounted-elsewhere" / "rte")
    run_dir = tmp_path / "run"
    train(run_dir)
    train(run_dir, f"task.data_dir={moved}")  # a requeued job on a node that mounts the data elsewhere
    assert record(run_dir)["status"] == "ok"
    with open(moved / "train.tsv", "a") as f:
        f.write("99\tone more\tsentence\tentailment\n")
    with pytest.raises(ConfigMismatchError, match="task.data_dir"):
        train(run_dir, f"task.data_dir={moved}")


def test_a_sweep_treats_a_run_of_another_config_as_stale(train, overrides, tmp_path):
    """The sweep's own cell fingerprints ignore command-line overrides; the run's config fingerprint does not."""
    import yaml

    from regbench.sweep.launch import HydraApp, plan_launch
    from regbench.sweep.spec import parse_sweep
    from tests.conftest import REPO

    base = {key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in overrides())}  # as a sweep file has them
    sweep = parse_sweep({"name": "s", "axes": {"variant": [{"label": "base", "overrides": {"optim.lr": 1e-3}}],
                                               "seed": [1]},
                         "fixed": base, "scales": {"full": {}, "mini": {}},
                         "report": {"rows": ["variant"], "column": "seed", "metric": "validation/accuracy"}})
    cell = sweep.cells("full")[0]
    train(tmp_path / "sweep" / cell.id, "seed=1")
    app = HydraApp(REPO / "train.py")
    current = plan_launch(sweep, "full", tmp_path / "sweep", app)
    assert current.pending == [], current.stale_why  # ok and current: skipped
    plan = plan_launch(sweep, "full", tmp_path / "sweep", app, ["trainer.max_epochs=3"])
    assert plan.stale == [cell.id] and [c.id for c in plan.pending] == [cell.id]
    assert "trainer.max_epochs: 1 -> 3" in plan.stale_why[cell.id]


@pytest.mark.parametrize("extra, steps, evaluated_at", [
    (("trainer.max_steps=2",), 2, [2]),          # shorter than an epoch: no end-of-epoch validation
    (("trainer.max_steps=0",), 0, [0]),
    pytest.param(("trainer.max_steps=9", "trainer.max_epochs=2"), 9, [6, 9], marks=pytest.mark.slow),
])
def test_ok_only_with_the_final_evaluation(train, tmp_path, extra, steps, evaluated_at):
    run_dir = tmp_path / "run"
    train(run_dir, *extra)
    rec = record(run_dir)
    assert rec["status"] == "ok" and rec["train_steps"] == steps
    assert [row["step"] for row in rec["history"]] == evaluated_at
    assert "validation/accuracy" in rec["final"]


def test_a_time_limit_stop_is_incomplete_evaluated_and_resumable(train, inject, tmp_path):
    import time

    import lightning as L

    class Slow(L.Callback):  # 0.4 s per step: the 1 s budget ends inside the epoch
        active = True

        def on_train_batch_end(self, *args):
            if self.active:
                time.sleep(0.4)

    slow = Slow()
    inject(slow)
    run_dir = tmp_path / "run"
    train(run_dir, "+trainer.max_time={seconds: 1}")
    rec = record(run_dir)
    assert rec["status"] == "incomplete" and "max_time" in rec["stopped"]
    assert 0 < rec["train_steps"] < 6 and rec["history"][-1]["step"] == rec["train_steps"]  # evaluated where it stopped
    slow.active = False
    train(run_dir, "+trainer.max_time={days: 1}")  # the budget is not result-relevant: the run continues
    rec = record(run_dir)
    assert rec["status"] == "ok" and rec["train_steps"] == 6 and rec["resumes"][0]["step"] > 0
    assert [row["step"] for row in rec["history"]][-1] == 6
