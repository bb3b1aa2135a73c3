"""Decoder-only backbones end to end: tiny random GPT-2, Llama and Qwen2 models saved and reloaded
through ``from_pretrained``, on classification/regression (GLUE fixtures), data-to-text (E2E fixtures)
and instruction tuning (Alpaca + MMLU fixtures), with ``none``, ``tlm``, ``lora_dropout`` and a
composition. The default suite runs one rotation (every family and every method at least once per
task kind); the full family x method matrix is marked slow."""

from __future__ import annotations

import json

import pytest

from regbench.train import run
from tests.conftest import compose_config
from tests.decoder_fixtures import BACKBONE_OPTION, FAMILIES, save_tiny_decoder

METHODS = ("none", "tlm", "lora_dropout", "[tlm,drophead]")
# One rotation: each family meets each method across the three task kinds; the rest is slow.
ROTATION = {"classification": [("gpt2", "none"), ("llama", "tlm"), ("qwen2", "lora_dropout"),
                               ("gpt2", "[tlm,drophead]")],
            "generation": [("llama", "none"), ("qwen2", "tlm"), ("gpt2", "lora_dropout"),
                           ("llama", "[tlm,drophead]")],
            "instruction": [("qwen2", "none"), ("gpt2", "tlm"), ("llama", "lora_dropout"),
                            ("qwen2", "[tlm,drophead]")]}


def matrix(kind: str) -> list:
    fast = set(ROTATION[kind])
    return [pytest.param(f, m, marks=() if (f, m) in fast else pytest.mark.slow, id=f"{f}-{m}")
            for f in FAMILIES for m in METHODS]


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory) -> dict:
    return {family: save_tiny_decoder(tmp_path_factory.mktemp(family), family) for family in FAMILIES}


def decoder_overrides(family: str, path, tmp_path, *extra: str) -> list[str]:
    return [f"backbone={BACKBONE_OPTION[family]}", f"backbone.path={path}", "trainer.max_steps=2",
            "trainer.max_epochs=1", "data.batch_size=4", f"data.cache_dir={tmp_path / 'cache'}", "optim.lr=1e-3",
            "optim.warmup_ratio=0.0", "checkpoint.enabled=false", "logger=none", *extra]


def _record(out) -> dict:
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok", record.get("error")
    return record


@pytest.mark.parametrize("family, method", matrix("classification"))
def test_classification_on_decoders(family, method, tiny_decoders, glue_root, tmp_path):
    out = tmp_path / "run"
    run(compose_config(["task=glue/sst2", f"task.data_dir={glue_root / 'sst2'}", f"regularizer={method}",
                        "data.max_length=48", "data.eval_limit=8",
                        *decoder_overrides(family, tiny_decoders[family], tmp_path)], out))
    record = _record(out)
    assert set(record["final"]) == {"validation/accuracy"} and 0.0 <= record["final"]["validation/accuracy"] <= 1.0
    assert record["backbone"] == BACKBONE_OPTION[family] or record["backbone"] == str(tiny_decoders[family])


@pytest.mark.parametrize("task, keys", [
    pytest.param("stsb", {"validation/pearson", "validation/spearmanr"}, id="stsb-regression"),
    pytest.param("mnli", {"validation_matched/accuracy", "validation_mismatched/accuracy"}, id="mnli",
                 marks=pytest.mark.slow),
    *[pytest.param(t, None, id=t, marks=pytest.mark.slow) for t in ("cola", "mrpc", "qqp", "qnli", "rte", "wnli")]])
def test_every_glue_task_on_a_decoder(task, keys, tiny_decoders, glue_root, tmp_path):
    out = tmp_path / "run"
    run(compose_config([f"task=glue/{task}", f"task.data_dir={glue_root / task}", "data.max_length=48",
                        "data.eval_limit=8", *decoder_overrides("gpt2", tiny_decoders["gpt2"], tmp_path)], out))
    record = _record(out)
    assert keys is None or set(record["final"]) == keys
