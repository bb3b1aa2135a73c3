"""End to end through ``regbench.train.run``: mixout, lora, lora_dropout train on a tiny BERT,
record their settings in metrics.json, and LoRA runs export adapters and resume from checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import compose_config
from tests.fixtures import write_glue_task


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    return write_glue_task(tmp_path_factory.mktemp("sst2"), "sst2", n_train=32, n_dev=16)


@pytest.mark.parametrize("regularizer, extra, expected", [
    ("mixout", ["regularizer.mixout.p=0.5"], {"p": 0.5, "faithful": False}),
    ("lora", ["regularizer.lora.r=4"], {"r": 4, "p": 0.1}),
    ("lora_dropout", ["regularizer.lora_dropout.r=4", "regularizer.lora_dropout.ensemble_passes=3"],
     {"ensemble_passes": 3, "ensemble_average": "probs", "p": 0.1}),
])
def test_train_records_settings_and_lora_exports_and_resumes(regularizer, extra, expected, sst2_dir,
                                                             tiny_run_overrides, tmp_path):
    from regbench.train import run

    out = tmp_path / "run"

    def overrides(epochs):
        return tiny_run_overrides("glue/sst2", sst2_dir, f"regularizer={regularizer}", f"trainer.max_epochs={epochs}",
                                  *extra)

    run(compose_config(overrides(1 if regularizer == "mixout" else 2), out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["regularizer"] == regularizer
    assert expected.items() <= record["regularizer_params"]["methods"][regularizer].items()
    params = record["params"]
    if regularizer == "mixout":  # full fine-tuning; the frozen targets are buffers, not parameters
        assert params["trainable"] == params["total"] > 0
        return
    assert 0 < params["trainable"] < params["total"] // 2
    assert (out / "adapter" / "adapter_config.json").is_file()
    # the checkpoint holds the adapters and the head, and the run resumes from it
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert any("lora_A" in k for k in state) and any("modules_to_save" in k for k in state)
    assert not any(k.endswith(("key.weight", "base_layer.weight")) for k in state)  # frozen backbone: not saved
    run(compose_config(overrides(2), out))  # resume=auto loads last.ckpt (the same config: a run dir has one)
    record = json.loads((out / "metrics.json").read_text())
    assert record["resumes"][-1]["step"] == record["train_steps"] > 0  # loaded strictly, frozen weights rebuilt
    assert [row["epoch"] for row in record["history"]] == [0, 1] and record["status"] == "ok"
