"""Every regularizer through the real training loop (Hydra config -> Lightning -> metrics.json)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose_config

METHODS = ["dropout", "attention_dropout", "drophead", "tlm", "very_large_dropout"]


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    from tests.fixtures import write_glue_task

    return write_glue_task(tmp_path_factory.mktemp("sst2"), "sst2", n_train=16, n_dev=8)


@pytest.mark.parametrize("method", METHODS)
def test_regularizer_trains_through_the_loop(method, sst2_dir, tiny_run_overrides, tmp_path):
    from regbench.train import run

    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/sst2", sst2_dir, f"regularizer={method}", "trainer.max_epochs=1",
                                            "checkpoint.enabled=false"), out)
    run(cfg)
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["regularizer"] == method
    assert record["regularizer_params"]["name"] == method
    assert record["train_steps"] == 2
