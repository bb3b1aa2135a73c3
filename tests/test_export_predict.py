"""`regbench export` (a finished run as a Hugging Face model folder) and `regbench predict`
(a split's predictions from a run dir; GLUE's test-submission files)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import compose_config


@pytest.fixture(scope="module")
def trained(tiny_bert, glue_root, tmp_path_factory):
    """Finished runs with checkpoints on RTE: TLM (an attention hook) and LoRA (a PEFT model)."""
    from regbench.train import run

    tmp = tmp_path_factory.mktemp("trained")
    data = tmp / "RTE"
    shutil.copytree(glue_root / "rte", data)
    runs = {}
    for name, extra in {"tlm": ["regularizer=tlm"], "lora": ["regularizer=lora", "optim.lr=5e-3"]}.items():
        out = tmp / name
        overrides = ["task=glue/rte", f"task.data_dir={data}", f"backbone.path={tiny_bert}", "logger=csv",
                     "trainer.max_epochs=1", "data.max_length=32", f"data.cache_dir={tmp / 'cache'}",
                     "optim.lr=1e-3", "optim.warmup_ratio=0.0", *extra]
        run(compose_config(overrides, out))
        runs[name] = out
    return runs, data


def _logits(model, tokenizer, sentences):
    import torch

    batch = tokenizer([s for s, _ in sentences], [t for _, t in sentences], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_export_writes_a_folder_plain_transformers_loads_with_the_trained_outputs(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from regbench.console import main
    from regbench.trained import load_trained_run

    runs, _ = trained
    out = tmp_path / "export"
    assert main(["export", str(runs["tlm"]), str(out)]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config._attn_implementation in ("sdpa", "eager")  # the TLM hook is training-only
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    pairs = [("the movie was great", "a good film"), ("the dog runs", "a cat sleeps in the park")]
    trained_run = load_trained_run(runs["tlm"])
    import torch

    assert torch.allclose(_logits(model, tokenizer, pairs), _logits(trained_run.module.model, tokenizer, pairs), atol=1e-5)
    card = (out / "README.md").read_text()
    record = json.loads((runs["tlm"] / "metrics.json").read_text())
    assert "base_model:" in card and "regularizer:tlm" in card
    assert f"| validation/accuracy | {record['best']['validation/accuracy']:.4f} |" in card
    assert "_target_: regbench.regularizers.tlm.TokenLevelMasking" in card  # the resolved config is in the card
    assert (out / "regbench_config.yaml").is_file() and (out / "regbench_metrics.json").is_file()


@pytest.mark.parametrize("mode", ["merged", "adapter"])
def test_lora_runs_export_merged_or_as_a_peft_adapter(trained, tmp_path, mode):
    import torch
    from transformers import AutoTokenizer

    from regbench.export import export_run
    from regbench.trained import load_trained_run

    runs, _ = trained
    out = tmp_path / mode
    notes = export_run(runs["lora"], out, lora=mode)
    assert notes["lora"] == mode and notes["verified_max_abs_diff"] < 1e-4
    if mode == "merged":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(out)
        assert not (out / "adapter_config.json").exists()
    else:
        from peft import AutoPeftModelForSequenceClassification

        model = AutoPeftModelForSequenceClassification.from_pretrained(out)
        assert (out / "adapter_config.json").is_file() and "library_name: peft" in (out / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(out)
    pairs = [("the movie was great", "a good film")]
    reference = _logits(load_trained_run(runs["lora"]).module.model, tokenizer, pairs)
    assert torch.allclose(_logits(model.eval(), tokenizer, pairs), reference, atol=1e-5)


def test_predict_validation_reproduces_the_recorded_metric(trained, tmp_path):
    from regbench.console import main

    runs, data = trained
    assert main(["predict", str(runs["tlm"]), "--split", "validation", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    gold = [line.split("\t")[-1] for line in (data / "dev.tsv").read_text().splitlines()[1:]]
    accuracy = sum(r["prediction"] == g for r, g in zip(rows, gold)) / len(gold)
    record = json.loads((runs["tlm"] / "metrics.json").read_text())
    assert len(rows) == len(gold) and accuracy == pytest.approx(record["best"]["validation/accuracy"])


def test_predict_writes_glue_submission_files_with_official_names_ids_and_labels(trained, tmp_path):
    from regbench.console import main
    from tests.fixtures import write_glue_test

    runs, data = trained
    ids = write_glue_test(data, "rte", n=7)
    submission = tmp_path / "submission"
    assert main(["predict", str(runs["tlm"]), "--glue-submission", str(submission)]) == 0
    lines = (submission / "RTE.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction"
    assert [line.split("\t")[0] for line in lines[1:]] == ids
    assert {line.split("\t")[1] for line in lines[1:]} <= {"entailment", "not_entailment"}
    assert (runs["tlm"] / "predictions" / "test.jsonl").is_file()


def test_glue_submission_names_and_label_values_follow_the_benchmark():
    from regbench.predict import submission_value

    expected = {"cola": ({"test": "CoLA.tsv"}, ["0", "1"]), "sst2": ({"test": "SST-2.tsv"}, ["0", "1"]),
                "mrpc": ({"test": "MRPC.tsv"}, ["0", "1"]), "stsb": ({"test": "STS-B.tsv"}, None),
                "qqp": ({"test": "QQP.tsv"}, ["0", "1"]), "qnli": ({"test": "QNLI.tsv"}, ["entailment", "not_entailment"]),
                "rte": ({"test": "RTE.tsv"}, ["entailment", "not_entailment"]), "wnli": ({"test": "WNLI.tsv"}, ["0", "1"]),
                "mnli": ({"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv", "test_ax": "AX.tsv"},
                         ["entailment", "neutral", "contradiction"])}
    for task, (files, labels) in expected.items():
        cfg = compose_config([f"task=glue/{task}"]).task
        assert dict(cfg.test.submission) == files and (None if cfg.test.labels is None else list(cfg.test.labels)) == labels
        if labels is not None and cfg.label_names:  # ids mean the same classes as in training
            assert len(labels) == len(cfg.label_names)
    stsb = compose_config(["task=glue/stsb"]).task
    assert [submission_value(stsb, {"prediction": v}) for v in (-0.4, 2.5, 5.7)] == ["0.000", "2.500", "5.000"]


def test_every_glue_test_layout_is_read(glue_root, tmp_path):
    from regbench.data import load_test_split
    from tests.fixtures import GLUE_TASKS, write_glue_test

    for task in GLUE_TASKS:
        folder = tmp_path / task
        folder.mkdir()
        ids = write_glue_test(folder, task, n=3)
        cfg = compose_config([f"task=glue/{task}", f"task.data_dir={folder}"]).task
        for split in cfg.test.files:
            ds = load_test_split(cfg, split)
            assert list(ds["index"]) == ids and all(ds[key][0] for key in cfg.text_keys), (task, split)


def test_runs_that_cannot_be_exported_are_refused_with_the_reason(tmp_path):
    from regbench.trained import TrainedRunError, load_trained_run

    (tmp_path / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    with pytest.raises(TrainedRunError, match="status is 'failed'"):
        load_trained_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok"}))
    with pytest.raises(TrainedRunError, match="checkpoint.enabled=false"):
        load_trained_run(tmp_path)
    with pytest.raises(TrainedRunError, match="not a run dir"):
        load_trained_run(tmp_path / "nowhere")


def test_export_without_the_reload_check_needs_no_task_data(trained, tmp_path):
    from regbench.console import main

    runs, _ = trained
    assert main(["export", str(runs["tlm"]), str(tmp_path / "out"), "--no-verify"]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "checked: loaded back" not in card and (tmp_path / "out" / "config.json").is_file()
    assert main(["export", str(runs["tlm"]), str(tmp_path / "out")]) == 2  # never into a non-empty folder
