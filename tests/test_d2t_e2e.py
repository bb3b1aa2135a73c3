"""End-to-end data-to-text runs: tiny BART, T5 and BERT2BERT on E2E fixtures, with and without TLM."""

from __future__ import annotations

import json

import pytest

from regbench.config import ConfigError
from regbench.train import run
from tests.conftest import compose_config
from tests.d2t_fixtures import save_tiny_bart, save_tiny_bert_for_bert2bert, save_tiny_t5, write_e2e

BACKBONES = {"bart": ("bart-base", save_tiny_bart), "t5": ("t5-small", save_tiny_t5),
             "bert2bert": ("bert2bert-minilm", save_tiny_bert_for_bert2bert)}


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory):
    return write_e2e(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def tiny_seq2seq(tmp_path_factory):
    return {name: save(tmp_path_factory.mktemp(name)) for name, (_, save) in BACKBONES.items()}


def overrides(backbone: str, path, data_dir, tmp_path, *extra: str) -> list[str]:
    return ["task=d2t/e2e", f"task.data_dir={data_dir}", f"backbone={BACKBONES[backbone][0]}",
            f"backbone.path={path}", "trainer.max_epochs=2", "data.batch_size=8", "data.max_length=96",
            f"data.cache_dir={tmp_path / 'cache'}", "optim.lr=3e-3", "optim.warmup_ratio=0.0",
            "task.generation.num_beams=2", "task.generation.max_new_tokens=24", "checkpoint.enabled=false",
            "logger=none", *extra]


@pytest.mark.parametrize("regularizer", ["none", "tlm"])
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_seq2seq_run_writes_bleu_and_predictions(backbone, regularizer, e2e_dir, tiny_seq2seq, tmp_path):
    out = tmp_path / "run"
    run(compose_config(overrides(backbone, tiny_seq2seq[backbone], e2e_dir, tmp_path, f"regularizer={regularizer}"),
                       out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["main_metric"] == "validation/bleu"
    assert set(record["final"]) == {"validation/bleu", "validation/rouge_l", "test/bleu", "test/rouge_l"}
    assert all(0.0 <= v <= 100.0 for v in record["final"].values())
    first, last = record["history"][0], record["history"][-1]
    assert last["train/loss"] < first["train/loss"]  # teacher-forced loss goes down
    rows = [json.loads(line) for line in (out / "predictions" / f"test_step{last['step']}.jsonl").open()]
    assert [r["example_id"] for r in rows] == list(range(6))  # one prediction per test MR
    assert rows[1]["references"] == ["Cotto serves French food in the riverside.",
                                     "In the riverside, Cotto serves French food."]
    assert all(isinstance(r["prediction"], str) for r in rows)


def test_bert2bert_learns_the_templates(e2e_dir, tiny_seq2seq, tmp_path):
    """Warm-started BERT2BERT (word-level vocabulary) picks up the fixture templates in a few epochs."""
    out = tmp_path / "run"
    run(compose_config(overrides("bert2bert", tiny_seq2seq["bert2bert"], e2e_dir, tmp_path,
                                 "trainer.max_epochs=4", "seed=1"), out))
    record = json.loads((out / "metrics.json").read_text())
    first, last = record["history"][0], record["history"][-1]
    # Learned (the templates give BLEU far above 10) and kept through the last epoch; with length-grouped
    # batches the first epoch can already reach the plateau, so progress is asserted on the loss.
    assert record["best"]["validation/bleu"] > 10.0 and last["validation/bleu"] > 10.0
    assert last["validation/bleu"] > 0.8 * record["best"]["validation/bleu"]
    assert last["train/loss"] < 0.9 * first["train/loss"], (first, last)


@pytest.mark.parametrize("task, backbone", [("d2t/e2e", "bert-base-cased"), ("glue/rte", "bart-base"),
                                            ("glue/sst2", "bert2bert-minilm")])
def test_backbone_of_the_wrong_kind_is_refused_before_loading(task, backbone, tmp_path):
    cfg = compose_config([f"task={task}", f"backbone={backbone}", "backbone.path=/does/not/exist"], tmp_path / "r")
    with pytest.raises(ConfigError, match=r"cannot run task .* needs backbone\.kind in"):
        run(cfg)
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["status"] == "failed" and "ConfigError" in record["error"]


@pytest.mark.parametrize("key, value", [("task.generation.num_beams", 0), ("task.generation.max_new_tokens", -1),
                                        ("task.max_source_length", 0)])
def test_bad_generation_settings_name_the_key(key, value, tmp_path):
    cfg = compose_config(["task=d2t/e2e", "backbone=bart-base", f"{key}={value}"], tmp_path / "r")
    with pytest.raises(ConfigError, match=rf"{key}={value}"):
        run(cfg)
