"""End to end: every GLUE task trains on a tiny BERT from official-layout files and records its run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose_config
from tests.fixtures import GLUE_TASKS

EXPECTED_KEYS = {
    "cola": ["validation/matthews_corrcoef"],
    "sst2": ["validation/accuracy"],
    "mrpc": ["validation/f1", "validation/accuracy"],
    "stsb": ["validation/pearson", "validation/spearmanr"],
    "qqp": ["validation/accuracy", "validation/f1"],
    "mnli": ["validation_matched/accuracy", "validation_mismatched/accuracy"],
    "qnli": ["validation/accuracy"],
    "rte": ["validation/accuracy"],
    "wnli": ["validation/accuracy"],
}


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_every_glue_task_writes_complete_metrics(task, glue_root, tiny_run_overrides, tmp_path):
    from regbench.train import run

    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides(f"glue/{task}", glue_root / task), out)
    best = run(cfg)

    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["error"] is None
    assert record["task"] == task and record["regularizer"] == "none"
    assert record["main_metric"] == EXPECTED_KEYS[task][0]
    assert sorted(record["final"]) == sorted(EXPECTED_KEYS[task])
    assert record["best"][record["main_metric"]] == pytest.approx(best)
    assert [row["epoch"] for row in record["history"]] == [0, 1]
    assert all(set(EXPECTED_KEYS[task]) <= set(row) for row in record["history"])
    assert record["train_samples"] == 2 * 48 and record["train_samples_per_s"] > 0
    assert record["train_steps"] == 2 * 6 and record["wall_time_s"] > 0
    assert record["params"]["trainable"] == record["params"]["total"] > 0
    assert (out / "config.yaml").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    if task == "stsb":  # regression: one real-valued output trained with MSE
        assert -1.0 <= record["final"]["validation/pearson"] <= 1.0


def test_training_reduces_loss_on_a_learnable_task(tiny_run_overrides, tmp_path):
    from regbench.train import run
    from tests.fixtures import write_glue_task

    data = write_glue_task(tmp_path / "sst2", "sst2", n_train=256, n_dev=64)
    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/sst2", data, "trainer.max_epochs=6", "data.batch_size=16",
                                                      "optim.lr=3e-3"), out)
    run(cfg)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    # The fixture's label is carried by one sentiment word: the tiny model must pick it up.
    assert history[-1]["validation/accuracy"] >= 0.75


def test_non_finite_loss_is_recorded_as_failed_with_its_step(glue_root, tiny_run_overrides, tmp_path):
    from regbench.train import run

    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "optim.lr=1e30", "optim.grad_clip=0"), out)
    with pytest.raises(FloatingPointError):
        run(cfg)
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert "non-finite training loss" in record["error"]
    assert isinstance(record["failed_step"], int) and record["failed_step"] >= 1


def test_failure_is_recorded_without_raising_when_asked(glue_root, tiny_run_overrides, tmp_path):
    from regbench.train import run

    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "optim.lr=1e30", "optim.grad_clip=0",
                                            "raise_on_failure=false"), out)
    assert run(cfg) is None
    assert json.loads((out / "metrics.json").read_text())["status"] == "failed"


def test_tokenized_data_is_cached_across_runs(glue_root, tiny_run_overrides, tmp_path, monkeypatch):
    from regbench.data import glue
    from regbench.train import run

    calls = []
    original = glue.read_tsv
    monkeypatch.setattr(glue, "read_tsv", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    for seed in (1, 2):
        run(compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "trainer.max_epochs=1",
                                              f"seed={seed}"), tmp_path / f"run{seed}"))
    assert len(calls) == 2  # train + dev read once, by the first run only


def test_resume_auto_continues_from_last_checkpoint(glue_root, tiny_run_overrides, tmp_path):
    from regbench.run_dir import ConfigMismatchError
    from regbench.train import run

    out = tmp_path / "run"
    run(compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "trainer.max_epochs=2"), out))
    run(compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "trainer.max_epochs=2"), out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["resumes"][-1]["step"] == 12  # the same config continues (here: a finished run ends at once)
    assert [row["step"] for row in record["history"]] == [6, 12]
    assert record["train_steps"] == 12 and record["status"] == "ok"
    # Extending training is another config (its schedule differs from a fresh 3-epoch run): refused.
    with pytest.raises(ConfigMismatchError, match=r"trainer\.max_epochs: 2 -> 3"):
        run(compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "trainer.max_epochs=3"), out))


def test_wandb_logger_runs_offline_and_persists_its_run_id(glue_root, tiny_run_overrides, tmp_path, monkeypatch):
    from regbench.train import run

    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "logger=wandb", "trainer.max_epochs=1"), out)
    assert cfg.logger.wandb.offline is True
    run(cfg)
    run_id = (out / "wandb_id").read_text()
    assert len(run_id) == 12
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
