"""Instruction tuning (task=instruct/alpaca): the Alpaca and MMLU loaders on fixture files in the official
layouts, the MMLU scorer against a hand computation on a fixed tiny model, and end-to-end runs on
tiny GPT-2 / Llama / Qwen2 with none, tlm, lora_dropout and a composition."""

from __future__ import annotations

import json

import pytest
import torch

from regbench.data import DataError
from regbench.data.instruct import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, mmlu_prompt, read_alpaca, read_mmlu
from regbench.train import run
from tests.conftest import compose_config
from tests.decoder_fixtures import ALPACA_ROWS, MMLU_ROWS, write_alpaca, write_mmlu
from tests.test_decoders import _record, decoder_overrides, matrix


@pytest.fixture(scope="module")
def instruct_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("alpaca")
    write_alpaca(root / "alpaca_data_cleaned.json")
    write_mmlu(root / "mmlu")
    return root


def test_alpaca_loader_reads_the_json_layout(tmp_path):
    rows = read_alpaca(write_alpaca(tmp_path / "a.json", n=4))
    assert rows == ALPACA_ROWS
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "x"}]))
    with pytest.raises(DataError, match=r"bad.json: row 1 must be an object with string 'instruction' and 'output'"):
        read_alpaca(tmp_path / "bad.json")


def test_mmlu_loader_reads_the_official_csv_layout(tmp_path):
    root = write_mmlu(tmp_path / "data")
    rows = read_mmlu(root)
    assert [r["subject"] for r in rows] == ["abstract_algebra"] * 2 + ["high_school_geography"] * 3
    assert rows[0] == {"subject": "abstract_algebra", "question": "Find the order of the group Z_4.",
                       "choices": ["1", "2", "3", "4"], "answer": 3}
    assert rows[3]["question"] == MMLU_ROWS["high_school_geography"][1][0]  # quoted field with commas
    assert len(read_mmlu(root, subjects=["high_school_geography"])) == 3
    with pytest.raises(DataError, match="task.mmlu.subjects: \\['virology'\\]"):
        read_mmlu(root, subjects=["virology"])
    with pytest.raises(DataError, match="no '\\*_val.csv' files"):
        read_mmlu(root, split="val")
    (root / "test" / "bad_test.csv").write_text("q,a,b,c,d,E\n")
    with pytest.raises(DataError, match="bad_test.csv:1: expected 6 columns"):
        read_mmlu(root)


def test_prompts_follow_the_published_templates():
    assert ALPACA_NO_INPUT.startswith("Below is an instruction that describes a task. Write a response")
    assert "### Input:\n{input}\n\n### Response:\n" in ALPACA_WITH_INPUT
    assert mmlu_prompt("high_school_geography", "Q?", ["w", "x", "y", "z"]) == (
        "The following are multiple choice questions (with answers) about high school geography.\n\n"
        "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer:")


@pytest.mark.parametrize("choices", ["letters", "texts"])
def test_mmlu_scorer_equals_a_hand_computation(choices, tiny_decoders, instruct_dir, tmp_path):
    """The module's choice scores (batched, right-padded) == sum of log p(continuation token) computed one
    sequence at a time on the same fixed tiny model."""
    from regbench.models import build_module, encoding_factory
    from regbench.models.backbone import load_tokenizer
    from regbench.regularizers import build_regularizer

    cfg = compose_config(["task=instruct/alpaca", f"task.data_dir={instruct_dir}", f"task.mmlu.choices={choices}",
                          "data.max_length=256", *decoder_overrides("gpt2", tiny_decoders["gpt2"], tmp_path)],
                         tmp_path / "run")
    module = build_module(cfg, build_regularizer(cfg.regularizer)).eval()
    tokenizer = load_tokenizer(str(tiny_decoders["gpt2"]), "decoder")
    encoding = encoding_factory(cfg)(tokenizer, cfg.task, 256)
    rows = read_mmlu(instruct_dir / "mmlu")
    encoded = encoding.encode({k: [r[k] for r in rows] for k in rows[0]})
    batch = encoding.collate([{**{k: v[i] for k, v in encoded.items()}, "example_id": i} for i in range(len(rows))])
    with torch.no_grad():
        scores = module.choice_scores(batch)
        model = module.model
        for q, row in enumerate(rows):
            prompt = tokenizer(mmlu_prompt(row["subject"], row["question"], row["choices"]))["input_ids"]
            texts = ["A", "B", "C", "D"] if choices == "letters" else row["choices"]
            for c, text in enumerate(texts):
                cont = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
                log_probs = torch.log_softmax(model(input_ids=torch.tensor([prompt + cont])).logits[0].float(), -1)
                hand = sum(float(log_probs[len(prompt) + t - 1, tok]) for t, tok in enumerate(cont))
                assert float(scores[q, c]) == pytest.approx(hand, abs=1e-4)
    assert scores.shape == (5, 4)


@pytest.mark.parametrize("family, method", matrix("instruction"))
def test_instruction_tuning_on_decoders(family, method, tiny_decoders, instruct_dir, tmp_path):
    out = tmp_path / "run"
    run(compose_config(["task=instruct/alpaca", f"task.data_dir={instruct_dir}", f"regularizer={method}",
                        "data.max_length=256", "task.max_target_length=32",
                        *decoder_overrides(family, tiny_decoders[family], tmp_path)], out))
    record = _record(out)
    assert record["main_metric"] == "mmlu/accuracy" and set(record["final"]) == {"mmlu/accuracy"}
    assert record["final"]["mmlu/accuracy"] in {k / 5 for k in range(6)}  # 5 fixture questions


def test_instruction_needs_a_decoder_and_local_mmlu(tiny_decoders, instruct_dir, tmp_path):
    from regbench.config import ConfigError

    with pytest.raises(ConfigError, match=r"needs backbone\.kind in \['decoder'\]"):
        run(compose_config(["task=instruct/alpaca", "backbone=bert-base-cased"], tmp_path / "a"))
    (tmp_path / "only").mkdir()
    write_alpaca(tmp_path / "only" / "alpaca_data_cleaned.json")
    with pytest.raises(DataError, match="MMLU: no '\\*_test.csv' files"):
        run(compose_config(["task=instruct/alpaca", f"task.data_dir={tmp_path / 'only'}",
                            *decoder_overrides("gpt2", tiny_decoders["gpt2"], tmp_path)], tmp_path / "b"))


@pytest.mark.parametrize("family, task, method, mode", [
    ("qwen2", "instruct", "lora_dropout", "adapter"),  # tied embeddings, PEFT causal-LM adapter
    pytest.param("gpt2", "d2t", "tlm", "merged", marks=pytest.mark.slow)])
def test_decoder_runs_export_and_reload(family, task, method, mode, tiny_decoders, instruct_dir, tmp_path):
    from regbench.export import export_run

    data = (["task=instruct/alpaca", f"task.data_dir={instruct_dir}", "data.max_length=256", "task.max_target_length=32"]
            if task == "instruct" else ["task=d2t/e2e", f"task.data_dir={_e2e(tmp_path)}", "data.eval_limit=3",
                                        "task.generation.max_new_tokens=8", "data.max_length=96"])
    overrides = [o for o in decoder_overrides(family, tiny_decoders[family], tmp_path) if "checkpoint" not in o]
    run(compose_config([*data, f"regularizer={method}", *overrides], tmp_path / "run"))
    notes = export_run(tmp_path / "run", tmp_path / "export", lora=mode)
    assert notes["verified_max_abs_diff"] < 1e-4  # loaded back through the PEFT/transformers causal-LM class
    card = (tmp_path / "export" / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card
    assert ("AutoPeftModelForCausalLM" if mode == "adapter" else "GPT2LMHeadModel") in card


def _e2e(tmp_path):
    from tests.d2t_fixtures import write_e2e

    return write_e2e(tmp_path / "e2e")
