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
from tests.decoder_fixtures import BACKBONE_OPTION, FAMILIES

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
    checkpointing = f"backbone.gradient_checkpointing={str(family == 'llama').lower()}"  # the preset, end to end
    run(compose_config(["task=glue/sst2", f"task.data_dir={glue_root / 'sst2'}", f"regularizer={method}",
                        "data.max_length=48", "data.eval_limit=8", checkpointing,
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


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory):
    from tests.d2t_fixtures import write_e2e

    return write_e2e(tmp_path_factory.mktemp("e2e"))


def d2t_overrides(family, path, data_dir, tmp_path, *extra):
    return ["task=d2t/e2e", f"task.data_dir={data_dir}", "data.max_length=96", "task.generation.num_beams=2",
            "task.generation.max_new_tokens=12", "task.generation.max_target_length=64", "data.eval_limit=3",
            *decoder_overrides(family, path, tmp_path, *extra)]


@pytest.mark.parametrize("family, method", matrix("generation"))
def test_data_to_text_on_decoders(family, method, tiny_decoders, e2e_dir, tmp_path):
    out = tmp_path / "run"
    run(compose_config([*d2t_overrides(family, tiny_decoders[family], e2e_dir, tmp_path), f"regularizer={method}"],
                       out))
    record = _record(out)
    assert set(record["final"]) == {"validation/bleu", "validation/rouge_l", "test/bleu", "test/rouge_l"}
    rows = [json.loads(line) for line in (out / "predictions" / "test_step2.jsonl").open()]
    assert [r["example_id"] for r in rows] == [0, 1, 2]
    # only the new tokens are decoded: a prediction never starts by repeating its prompt (the MR)
    assert all(isinstance(r["prediction"], str) and not r["prediction"].startswith(r["source"][:12]) for r in rows)


def test_causal_lm_encoding_scores_the_target_tokens_only(tiny_decoders):
    from omegaconf import OmegaConf

    from regbench.data.causal import causal_lm_encoding
    from regbench.models.backbone import load_tokenizer

    for family in FAMILIES:
        tokenizer = load_tokenizer(str(tiny_decoders[family]), "decoder")
        task = OmegaConf.create({"generation": {"max_target_length": 32}, "max_source_length": None})
        encoding = causal_lm_encoding(tokenizer, task, 64)
        rows = encoding.encode({"source": ["name[Aromi]", "name[Cotto], area[riverside]"],
                                "target": ["Aromi.", "Cotto is by the river."]})
        for ids, labels, prompt in zip(rows["input_ids"], rows["labels"], rows["prompt_ids"]):
            assert ids[:len(prompt)] == prompt and labels[:len(prompt)] == [-100] * len(prompt)
            assert labels[len(prompt):] == ids[len(prompt):] and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(rows["input_ids"][1][len(rows["prompt_ids"][1]):-1]) == "Cotto is by the river."
        batch = encoding.collate([{k: v[i] for k, v in rows.items()} for i in range(2)])
        short, long_ = (len(p) for p in rows["prompt_ids"])
        assert batch["prompt_attention_mask"][0].tolist() == [0] * (long_ - short) + [1] * short  # left padding
        assert batch["attention_mask"][0, -1] == 0 and batch["labels"][0, -1] == -100  # right padding, not scored


def test_gradient_checkpointing_is_refused_where_it_cannot_act(tmp_path):
    from regbench.config import ConfigError

    cfg = compose_config(["task=glue/rte", "+backbone.gradient_checkpointing=true"], tmp_path / "r")
    with pytest.raises(ConfigError, match="gradient_checkpointing=true is implemented for decoder-only"):
        run(cfg)


def test_prompt_plus_response_must_fit_the_positions(tiny_decoders, e2e_dir, tmp_path):
    from regbench.models.backbone import BackboneMismatchError

    cfg = compose_config([*d2t_overrides("gpt2", tiny_decoders["gpt2"], e2e_dir, tmp_path), "data.max_length=480"],
                         tmp_path / "r")  # the tiny GPT-2 has 512 positions; 480 + 64 do not fit
    with pytest.raises(BackboneMismatchError, match=r"max_target_length=544 exceeds the model positions"):
        run(cfg)


@pytest.mark.parametrize("task", [pytest.param(t, marks=() if t == "tnews" else pytest.mark.slow)
                                  for t in ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl")])
def test_every_clue_task_on_a_decoder(task, tiny_decoders, tmp_path):
    """Chinese text through a byte-level decoder tokenizer (Qwen2: byte-level BPE), FewCLUE file names."""
    from tests.clue_fixtures import write_clue_task

    data = write_clue_task(tmp_path / task, task, n_train=16, n_dev=8, fewclue=task == "tnews")
    out = tmp_path / "run"
    run(compose_config([f"task=clue/{task}", f"task.data_dir={data}", "data.max_length=96",
                        *decoder_overrides("qwen2", tiny_decoders["qwen2"], tmp_path)], out))
    assert set(_record(out)["final"]) == {"validation/accuracy"}
