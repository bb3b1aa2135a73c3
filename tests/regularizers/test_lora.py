"""LoRA through PEFT: only adapters + head train, per-family targets, adapter export and
checkpoint round-trips, loss goes down."""

import pytest
import torch
from peft import PeftModel
from transformers import (AutoConfig, AutoModelForSequenceClassification, BartConfig,
                          BartForSequenceClassification, BertConfig, T5Config, T5ForSequenceClassification)

from regbench.regularizers import RegularizerConfigError
from regbench.train import count_parameters
from regbench.regularizers.lora import LoRA
from tests.regularizers.methods import as_stack, stack

HIDDEN, LAYERS, LABELS = 32, 2, 2


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A tiny BERT classifier saved with save_pretrained (loaded back through from_pretrained)."""
    path = tmp_path_factory.mktemp("tiny_bert_lora")
    config = BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=LABELS)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    return str(path)


def build(path, regularizer, seed=1):
    config = AutoConfig.from_pretrained(path)
    regularizer.configure_backbone_config(config)
    torch.manual_seed(seed)
    return regularizer.apply(AutoModelForSequenceClassification.from_pretrained(path, config=config))


def toy_batch(n=32, length=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (n, length), generator=gen)
    ids[: n // 2, 3] = 7
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": (ids == 7).any(1).long()}


def inputs_of(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def train(model, regularizer, steps, lr=1e-2, batch=None):
    batch = batch or toy_batch()
    regularizer = as_stack(*getattr(regularizer, "members", [regularizer]))
    groups = regularizer.param_groups(model, lr, 0.0)
    opt = torch.optim.AdamW(groups, lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        regularizer.training_loss(model, batch).backward()
        opt.step()
    return model


def test_only_adapters_and_head_are_trainable(tiny_bert_dir):
    reg = LoRA(r=4)
    model = build(tiny_bert_dir, reg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    adapters = LAYERS * 2 * 4 * (HIDDEN + HIDDEN)  # query + value per layer, A: r x in, B: out x r
    head = HIDDEN * LABELS + LABELS
    base = count_parameters(AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir))["total"]
    counts = count_parameters(model)
    assert counts == {"trainable": adapters + head, "total": base + adapters + head}  # + head copy
    # the optimizer groups hold exactly the trainable parameters
    grouped = sum(p.numel() for g in as_stack(reg).param_groups(model, 1e-3, 0.01) for p in g["params"])
    assert grouped == adapters + head
    assert model.peft_config["default"].target_modules == {"query", "value"}
    assert "classifier" in model.peft_config["default"].modules_to_save


@pytest.mark.parametrize("model_cls, config, targets, head", [
    (BartForSequenceClassification,
     BartConfig(vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32),
     ["q_proj", "v_proj"], "classification_head"),
    (T5ForSequenceClassification,
     T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2),
     ["q", "v"], "classification_head"),
])
def test_default_targets_per_backbone_family(model_cls, config, targets, head):
    reg = LoRA(r=2)
    model = reg.apply(model_cls(config))
    assert model.peft_config["default"].target_modules == set(targets)
    assert head in model.peft_config["default"].modules_to_save
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(f"{head}.modules_to_save" in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)


def test_adapter_export_round_trip(tiny_bert_dir, tmp_path):
    reg = LoRA(r=4)
    model = train(build(tiny_bert_dir, reg), reg, steps=3)
    reg.export(model, str(tmp_path))
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    model.eval()
    batch = inputs_of(toy_batch())
    with torch.no_grad():
        expected = model(**batch).logits
        torch.testing.assert_close(loaded(**batch).logits, expected)
    fresh = build(tiny_bert_dir, LoRA(r=4), seed=5).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(**batch).logits, expected)  # the round trip carried the training


def test_checkpoint_state_dict_loads_back(tiny_bert_dir):
    reg = LoRA(r=4)
    model = train(build(tiny_bert_dir, reg), reg, steps=3).eval()
    fresh = build(tiny_bert_dir, LoRA(r=4), seed=5)
    fresh.load_state_dict(model.state_dict())  # strict
    fresh.eval()
    batch = inputs_of(toy_batch())
    with torch.no_grad():
        torch.testing.assert_close(fresh(**batch).logits, model(**batch).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name, extra", [("lora", {}), ("lora_dropout", {"p": 0.3})])
def test_training_reduces_loss(tiny_bert_dir, name, extra):
    reg = stack(name, r=4, **extra)
    model = build(tiny_bert_dir, reg)
    batch = toy_batch()
    model.eval()
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(reg.predict_logits(model, batch), batch["labels"]).item()
    train(model, reg, steps=40, lr=1e-2, batch=batch)
    model.eval()
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(reg.predict_logits(model, batch), batch["labels"]).item()
    assert after < 0.6 * before, (before, after)


@pytest.mark.parametrize("params, key, text", [
    ({"r": 0}, "regularizer.lora.r", "[1"),
    ({"r": 2.5}, "regularizer.lora.r", "integer"),
    ({"alpha": 0}, "regularizer.lora.alpha", "(0.0"),
    ({"p": 1.0}, "regularizer.lora.p", "[0.0, 1.0)"),
    ({"target_modules": []}, "regularizer.lora.target_modules", "non-empty"),
])
def test_bad_parameters_name_key_and_range(params, key, text):
    with pytest.raises(RegularizerConfigError) as err:
        stack("lora", **params)
    assert key in str(err.value) and text in str(err.value)


def test_unknown_family_needs_explicit_targets():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2,
                                                                 hidden_dim=32))
    with pytest.raises(RegularizerConfigError, match="regularizer.target_modules"):
        LoRA().apply(model)
    LoRA(target_modules=["q_lin", "v_lin"]).apply(model)  # explicit targets work
