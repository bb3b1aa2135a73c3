"""The `deberta-v3-base` backbone option (LoRA Dropout's GLUE backbone) on its real construction
path: a tiny DeBERTa-v2 architecture saved with save_pretrained, loaded by the backbone option with
`backbone.path`, trained with LoRA Dropout (PEFT's DeBERTa-v2 targets) through train.run."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from tests.conftest import REPO, compose_config
from tests.fixtures import SPECIAL, WORDS


def save_tiny_deberta(path):
    import torch
    from transformers import BertTokenizer, DebertaV2Config, DebertaV2Model

    vocab = SPECIAL + list(WORDS)
    torch.manual_seed(0)
    config = DebertaV2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, relative_attention=True,
                             position_buckets=16, pos_att_type=["p2c", "c2p"], type_vocab_size=0)
    DebertaV2Model(config).save_pretrained(path)
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
    return path


def test_the_option_names_the_papers_hub_model():
    option = OmegaConf.load(REPO / "conf" / "backbone" / "deberta-v3-base.yaml")
    assert (option.name, option.path, option.kind) == ("deberta-v3-base", "microsoft/deberta-v3-base", "encoder")


def test_lora_dropout_trains_a_deberta_v2_model_through_the_backbone_option(glue_root, tmp_path):
    from regbench.train import run

    model_dir = save_tiny_deberta(tmp_path / "tiny-deberta")
    out = tmp_path / "run"
    cfg = compose_config([
        "task=glue/rte", f"task.data_dir={glue_root / 'rte'}", "backbone=deberta-v3-base", f"backbone.path={model_dir}",
        "regularizer=lora_dropout", "regularizer.lora_dropout.p=0.2", "regularizer.lora_dropout.ensemble_passes=2", "logger=none",
        "trainer.max_epochs=1", "data.batch_size=8", "data.max_length=32", f"data.cache_dir={tmp_path / 'cache'}",
        "optim.lr=1e-3", "checkpoint.enabled=false",
    ], out)
    run(cfg)
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok", record.get("error")
    # the deberta-v3-base option ran with backbone.path pointing at the tiny model: the record names both
    assert record["backbone_option"] == "deberta-v3-base" and record["backbone"] == record["backbone_path"] != "deberta-v3-base"
    assert 0.0 <= record["final"]["validation/accuracy"] <= 1.0
    # only the adapters (on query_proj / value_proj) and the head train
    assert 0 < record["params"]["trainable"] < record["params"]["total"] / 2
