"""Every regularizer, and a combination, through the real training loop (Hydra config -> Lightning ->
metrics.json)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose_config
from tests.regularizers.methods import METHODS


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    from tests.fixtures import write_glue_task

    return write_glue_task(tmp_path_factory.mktemp("sst2"), "sst2", n_train=16, n_dev=8)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("none", "lora", "lora_dropout", "mixout")])
def test_regularizer_trains_through_the_loop(method, sst2_dir, tiny_run_overrides, tmp_path):
    """(none: every e2e test; LoRA, LoRA Dropout, Mixout: test_peft_mixout_e2e.py.)"""
    from regbench.train import run

    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/sst2", sst2_dir, f"regularizer={method}", "trainer.max_epochs=1",
                                            "checkpoint.enabled=false"), out)
    run(cfg)
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["regularizer"] == method
    assert record["regularizer_params"]["name"] == method
    assert record["train_steps"] == 2


def test_a_combination_trains_and_names_run_dir_metrics_and_wandb_after_all_members(sst2_dir, tiny_run_overrides,
                                                                                     tmp_path):
    from regbench.train import run

    overrides = tiny_run_overrides("glue/sst2", sst2_dir, "regularizer=[tlm,drophead]", "regularizer.drophead.p=0.3",
                                   "trainer.max_epochs=1", "checkpoint.enabled=false", "logger=wandb")
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_config(overrides)
    assert "/tlm+drophead/seed42/" in HydraConfig.get().run.dir
    from regbench.loggers import run_tags

    assert cfg.logger.wandb.name == "bert-base-cased-tlm+drophead-seed42"
    assert "regularizer:tlm+drophead" in run_tags(cfg)
    out = tmp_path / "run"
    run(compose_config(overrides, out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["regularizer"] == "tlm+drophead"
    assert list(record["regularizer_params"]["methods"]) == ["tlm", "drophead"]
    assert record["regularizer_params"]["methods"]["drophead"]["p"] == 0.3


@pytest.mark.slow  # two tiny runs: ~15 s idle
def test_mixouts_table1_recipe_and_rdrop_on_top_train_through_the_loop(sst2_dir, tiny_run_overrides, tmp_path):
    """Table 1 of the Mixout paper as one run (head outside mixout, dropout + wdecay(0) on it, the rest
    pulled toward w_pre), and R-Drop wrapping wdecay + LayerDrop, through Lightning's hooks
    (before_optimizer_step gets Lightning's optimizer wrapper)."""
    from regbench.train import run

    runs = {"mixout+very_large_dropout+wdecay": ["regularizer=[mixout,very_large_dropout,wdecay]",
                                                 "regularizer.mixout.head=exclude", "regularizer.very_large_dropout.p=0.1",
                                                 "regularizer.wdecay.target=pretrained", "optim.weight_decay=0.0"],
            "layerdrop+wdecay+rdrop": ["regularizer=[layerdrop,wdecay,rdrop]", "regularizer.layerdrop.p=0.5"]}
    for name, extra in runs.items():
        out = tmp_path / name
        run(compose_config(tiny_run_overrides("glue/sst2", sst2_dir, *extra, "trainer.max_epochs=1",
                                              "checkpoint.enabled=false"), out))
        record = json.loads((out / "metrics.json").read_text())
        assert record["status"] == "ok" and record["regularizer"] == name, record.get("error")
