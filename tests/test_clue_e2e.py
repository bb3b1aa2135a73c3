"""End to end: CLUE tasks train on a tiny Chinese-vocabulary BERT from official-layout JSON lines."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose_config


@pytest.fixture(scope="module")
def tiny_chinese_bert(tmp_path_factory):
    from tests.clue_fixtures import VOCAB
    from tests.fixtures import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-chinese-bert"), vocab=VOCAB)


def test_tiny_tokenizer_splits_chinese_characters(tiny_chinese_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chinese_bert)
    assert tokenizer.tokenize("我是[他]，<它>龙") == ["我", "是", "[", "他", "]", "，", "<", "它", ">", "[UNK]"]
    assert tokenizer.unk_token_id not in tokenizer("我是他的人")["input_ids"]


@pytest.mark.parametrize("task, fewclue, regularizer", [
    ("afqmc", False, "none"),
    ("tnews", True, "tlm"),       # FewCLUE file names and int codes
    ("cluewsc2020", False, "none"),
])
def test_clue_task_trains_and_records_accuracy(task, fewclue, regularizer, tiny_chinese_bert, tmp_path):
    from regbench.train import run
    from tests.clue_fixtures import write_clue_task

    data = write_clue_task(tmp_path / task, task, n_train=32, n_dev=16, fewclue=fewclue)
    out = tmp_path / "run"
    cfg = compose_config([
        f"task=clue/{task}", f"task.data_dir={data}", "backbone=bert-base-chinese",
        f"backbone.path={tiny_chinese_bert}", f"regularizer={regularizer}", "logger=csv",
        "trainer.max_epochs=1", "data.batch_size=8", "data.max_length=32", f"data.cache_dir={tmp_path / 'cache'}",
        "optim.lr=1e-3", "optim.warmup_ratio=0.0", "checkpoint.enabled=false",
    ], out)
    best = run(cfg)

    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["error"] is None
    assert record["task"] == task and record["task_family"] == "clue"
    # backbone.path points at another model than the preset's: the record names what was loaded
    assert record["regularizer"] == regularizer and record["backbone"] == str(tiny_chinese_bert)
    assert record["main_metric"] == "validation/accuracy"
    assert sorted(record["final"]) == ["validation/accuracy"]
    assert 0.0 <= record["final"]["validation/accuracy"] <= 1.0
    assert record["best"]["validation/accuracy"] == pytest.approx(best)
    assert record["train_samples"] == 32 and record["train_steps"] == 4
