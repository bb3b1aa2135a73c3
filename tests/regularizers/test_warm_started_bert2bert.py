"""Issue 12, defect 1: TLM and DropHead reach every layer they claim in a warm-started BERT2BERT.

``EncoderDecoderModel.from_encoder_decoder_pretrained`` (the path ``backbone=bert2bert-minilm`` takes)
replaces the encoder's and decoder's configs after their layers were built, so the layers hold stale
config objects. Built here through the training loop's own construction code, from saved tiny BERTs,
and from ``from_pretrained`` of a saved BERT2BERT; a probe records which attention modules went
through the method's hook in one training forward.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from regbench.models.seq2seq import build_seq2seq_model
from regbench.regularizers import attention_hooks
from regbench.regularizers.drophead import DropHead
from regbench.regularizers.tlm import TokenLevelMasking
from tests.conftest import compose_config
from tests.d2t_fixtures import save_tiny_bert_for_bert2bert, write_e2e


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert_for_bert2bert(tmp_path_factory.mktemp("b2b-source"))


@pytest.fixture(scope="module")
def saved_bert2bert(bert_dir, tmp_path_factory):
    """A warm-started BERT2BERT saved with save_pretrained (loaded back by AutoModelForSeq2SeqLM)."""
    path = tmp_path_factory.mktemp("b2b-saved")
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    build_seq2seq_model(str(bert_dir), "encoder_decoder", TokenLevelMasking(keep_rate=1.0), tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _build(construction, bert_dir, saved_bert2bert, regularizer):
    path, kind = (bert_dir, "encoder_decoder") if construction == "warm_start" else (saved_bert2bert, "seq2seq")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = build_seq2seq_model(str(path), kind, regularizer, tokenizer)
    return regularizer.apply(model).train()


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 30, (3, 9), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, :7].clone()}


def _attention_paths(model, suffix):
    return {path for path, _ in model.named_modules() if path.endswith(suffix)}


EXPECTED = {  # the attention layers each method claims (module paths inside the BERT2BERT)
    "tlm": (".attention.self",),  # encoder + decoder self-attention, never cross-attention
    "drophead": (".attention.self", ".crossattention.self"),
}


@pytest.mark.parametrize("construction", ["warm_start", "from_pretrained"])
@pytest.mark.parametrize("cls, params", [(TokenLevelMasking, {"keep_rate": 0.5}), (DropHead, {"p": 0.5})],
                         ids=["tlm", "drophead"])
def test_every_claimed_attention_layer_goes_through_the_hook(construction, cls, params, bert_dir, saved_bert2bert,
                                                             monkeypatch):
    regularizer = cls(**params)
    model = _build(construction, bert_dir, saved_bert2bert, regularizer)
    paths = {id(module): path for path, module in model.named_modules()}
    hooked: list[str] = []
    original = cls.attention

    def probe(self, module, *args, **kwargs):
        hooked.append(paths[id(module)])
        return original(self, module, *args, **kwargs)

    monkeypatch.setattr(cls, "attention", probe)
    model(**_batch())
    claimed = set().union(*(_attention_paths(model, s) for s in EXPECTED["tlm" if cls is TokenLevelMasking else
                                                                             "drophead"]))
    assert len([p for p in claimed if p.startswith("encoder.")]) == 2
    assert set(hooked) >= claimed, f"never hooked: {sorted(claimed - set(hooked))}"


def test_tlm_changes_the_warm_started_encoder_output_in_training(bert_dir, saved_bert2bert):
    torch.manual_seed(0)
    model = _build("warm_start", bert_dir, saved_bert2bert, TokenLevelMasking(keep_rate=0.5, attention_dropout=0.0))
    for module in model.modules():  # dropout off: only TLM can make training differ from eval
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = _batch()
    encoder = model.get_encoder()
    with torch.no_grad():
        trained = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        model.eval()
        plain = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert not torch.equal(trained, plain), "TLM never reached the encoder"


def test_a_claimed_layer_that_bypasses_the_hook_fails_the_run_naming_it(bert_dir, tmp_path, monkeypatch):
    """The first training step checks every claimed layer: reintroduce the stale-config bug (switch only
    the sub-models' own configs) and the real run must fail, naming the encoder layers it missed."""
    from transformers import PreTrainedModel

    from regbench.train import run

    monkeypatch.setattr(attention_hooks, "held_configs",
                        lambda model: [m.config for m in model.modules() if isinstance(m, PreTrainedModel)],
                        raising=False)
    out = tmp_path / "run"
    cfg = compose_config([
        "task=d2t/e2e", f"task.data_dir={write_e2e(tmp_path / 'e2e', n_train=8, n_dev=2, n_test=2)}",
        "backbone=bert2bert-minilm", f"backbone.path={bert_dir}", "regularizer=tlm", "trainer.max_steps=1",
        "data.batch_size=4", "data.max_length=48", f"data.cache_dir={tmp_path / 'cache'}", "checkpoint.enabled=false",
        "logger=none", "task.generation.max_new_tokens=4", "task.generation.num_beams=1", "raise_on_failure=false"],
        out)
    run(cfg)
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed", "a layer that bypassed TLM trained silently"
    assert "encoder.encoder.layer.0.attention.self" in record["error"]
    assert "encoder.encoder.layer.1.attention.self" in record["error"]
    assert "decoder.bert.encoder.layer.0.attention.self" not in record["error"]  # the decoder was reached
