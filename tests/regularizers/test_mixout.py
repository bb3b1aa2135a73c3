"""Mixout (arXiv 1909.11299): eval = plain weights, E[w_mix] = w, per-input-neuron masks,
analytic gradient (and the reference quirk), p=0 = plain training, checkpoints, loss goes down."""

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, BartConfig, BertConfig, T5Config
from torch.nn.utils import parametrize

from regbench.regularizers import RegularizerConfigError
from tests.regularizers.methods import as_stack, method, stack
from regbench.regularizers.mixout import Mixout, MixoutParametrization


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A tiny BERT classifier saved with save_pretrained (loaded back through from_pretrained)."""
    path = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    return str(path)


def build(path, regularizer=None, seed=1):
    config = AutoConfig.from_pretrained(path)
    if regularizer is not None:
        regularizer.configure_backbone_config(config)
    torch.manual_seed(seed)  # the fresh head is not in the checkpoint: same seed, same head
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    return regularizer.apply(model) if regularizer is not None else model


def toy_batch(n=16, length=12, seed=0):
    """Label = whether token 7 occurs: learnable by a tiny model in a few dozen steps."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (n, length), generator=gen)
    ids[: n // 2, 3] = 7
    labels = (ids == 7).any(1).long()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def mixed_linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear) and parametrize.is_parametrized(m, "weight")]


def one_step(model, regularizer, batch, lr=1e-2):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    as_stack(regularizer).training_loss(model, batch).backward()
    opt.step()


def test_every_linear_mixed_and_all_dropout_zero(tiny_bert_dir):
    reg = Mixout(p=0.9)
    model = build(tiny_bert_dir, reg)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * 6 + 2  # Q,K,V,O,FFN in/out per layer + pooler + classifier
    assert all(parametrize.is_parametrized(m, "weight") for m in linears)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    # the optimizer sees the original parameters; the targets are buffers
    names = [n for n, _ in model.named_parameters()]
    assert any(n.endswith("query.parametrizations.weight.original") for n in names)
    assert not any("target" in n for n in names)
    assert reg.describe() == {"name": "mixout", "p": 0.9, "include": [".*"], "exclude": [],
                              "disable_dropout": True, "faithful": False, "head": "w0"}


@pytest.mark.parametrize("config", [
    BartConfig(vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, classifier_dropout=0.2),
    T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, dropout_rate=0.1),
])
def test_dropout_is_zero_for_other_families(config):
    Mixout().configure_backbone_config(config)
    rates = {k: v for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)}
    assert rates and all(v == 0.0 for v in rates.values()), rates
    model = Mixout().apply(AutoModelForSequenceClassification.from_config(config))
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert all(getattr(m, "dropout", 0.0) == 0.0 for m in model.modules()
               if isinstance(getattr(m, "dropout", None), float))


def test_include_exclude_patterns(tiny_bert_dir):
    model = build(tiny_bert_dir, Mixout(p=0.5, include=[r"encoder"], exclude=[r"\.output\.dense$"]))
    mixed = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and parametrize.is_parametrized(m)}
    assert "bert.encoder.layer.0.attention.self.query" in mixed
    assert "bert.encoder.layer.1.output.dense" not in mixed  # excluded (FFN out)
    assert "bert.encoder.layer.1.attention.output.dense" not in mixed  # excluded (attention out)
    assert "classifier" not in mixed and "bert.pooler.dense" not in mixed  # not included
    assert len(mixed) == 2 * 4  # Q, K, V, FFN in


def test_eval_uses_current_weights(tiny_bert_dir):
    reg = Mixout(p=0.9)
    model = build(tiny_bert_dir, reg)
    batch = toy_batch()
    one_step(model, reg, batch)  # move w away from its target u
    model.eval()
    moved = 0
    for m in mixed_linears(model):
        original = m.parametrizations.weight.original
        moved += not torch.equal(original, m.parametrizations.weight[0].target)
        assert m.weight is original
    assert moved >= 10  # of 14 (a layer whose columns were all swapped back gets no gradient)
    # whole model in eval == a plain model holding the current weights
    state = {k.replace("parametrizations.weight.original", "weight"): v for k, v in model.state_dict().items()
             if not k.endswith("parametrizations.weight.0.target")}
    plain = build(tiny_bert_dir)
    plain.load_state_dict(state)
    plain.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, plain(**inputs).logits, rtol=0, atol=0)


def test_expected_mixed_weight_is_weight():
    """E[w_mix] = w: mean of n draws within 5 standard errors for every entry (seed 0)."""
    torch.manual_seed(0)
    p, n = 0.7, 20000
    u = torch.randn(8, 16)
    w = u + torch.randn(8, 16)
    mix = MixoutParametrization(u, p, faithful=False).train()
    with torch.no_grad():
        mean = torch.stack([mix(w) for _ in range(n)]).mean(0)
    stderr = (w - u).abs() * (p / (1 - p) / n) ** 0.5  # std of u + xi (w-u)/(1-p) over sqrt(n)
    z = (mean - w).abs() / stderr
    assert z.max() < 5.0, z.max()
    # and it is not trivially w: single draws deviate
    assert not torch.allclose(mix(w), w)


def test_masks_are_per_input_neuron_and_shared_by_the_batch():
    torch.manual_seed(0)
    p = 0.5
    linear = nn.Linear(16, 8)
    u = linear.weight.detach().clone()
    with torch.no_grad():
        linear.weight.add_(torch.randn(8, 16))
    w = linear.weight.detach().clone()
    parametrize.register_parametrization(linear, "weight", MixoutParametrization(u, p, False))
    linear.train()
    mix = linear.parametrizations.weight[0]
    with torch.no_grad():
        w_mix = linear.weight
        keep = mix.last_mask
    assert keep.shape == (1, 16)
    assert 0 < keep.sum() < 16
    kept = keep[0].bool()
    # every outgoing weight of a dropped input neuron is back at its target, kept ones rescaled
    torch.testing.assert_close(w_mix[:, ~kept], u[:, ~kept], rtol=0, atol=0)
    torch.testing.assert_close(w_mix[:, kept], (u + (w - u) / (1 - p))[:, kept])
    # one mask for the whole mini-batch: identical rows give identical outputs
    x = torch.randn(1, 16).repeat(32, 1)
    with torch.no_grad():
        out = linear(x)
    assert torch.equal(out, out[:1].expand_as(out))
    # the bias is not mixed
    assert not parametrize.is_parametrized(linear, "bias")


@pytest.mark.parametrize("faithful", [False, True])
def test_gradient_matches_analytic_derivative(faithful):
    torch.manual_seed(0)
    p = 0.6
    linear = nn.Linear(12, 5)
    u = linear.weight.detach().clone()
    with torch.no_grad():
        linear.weight.add_(torch.randn(5, 12))
    parametrize.register_parametrization(linear, "weight", MixoutParametrization(u, p, faithful))
    linear.train()
    x, g = torch.randn(7, 12), torch.randn(7, 5)
    (linear(x) * g).sum().backward()
    keep = linear.parametrizations.weight[0].last_mask
    assert 0 < keep.sum() < 12
    d_wmix = g.T @ x  # dL/dw_mix
    expected = d_wmix * keep if faithful else d_wmix * keep / (1 - p)
    torch.testing.assert_close(linear.parametrizations.weight.original.grad, expected)
    torch.testing.assert_close(linear.bias.grad, g.sum(0))


def test_p_zero_equals_plain_training(tiny_bert_dir):
    def train(model, loss_fn):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        for step in range(4):
            opt.zero_grad()
            loss_fn(model, toy_batch(seed=step)).backward()
            opt.step()
        return model

    reg = Mixout(p=0.0)
    mixed = train(build(tiny_bert_dir, reg), as_stack(reg).training_loss)
    plain_cfg = Mixout(p=0.0)  # only to disable dropout identically in the plain model
    config = AutoConfig.from_pretrained(tiny_bert_dir)
    plain_cfg.configure_backbone_config(config)
    torch.manual_seed(1)
    plain = train(AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, config=config),
                  lambda m, b: m(**b).loss)
    start = build(tiny_bert_dir)
    moved = 0.0
    for (name, param), (_, before) in zip(plain.named_parameters(), start.named_parameters()):
        owner, leaf = name.rsplit(".", 1)
        current = mixed.get_submodule(owner)
        ours = current.parametrizations.weight.original if (
            leaf == "weight" and parametrize.is_parametrized(current, "weight")) else getattr(current, leaf)
        torch.testing.assert_close(ours, param, rtol=1e-5, atol=1e-6)
        moved = max(moved, (param - before).abs().max().item())
    assert moved > 1e-3  # training did change the weights


def test_checkpoint_state_dict_loads_back(tiny_bert_dir):
    reg = Mixout(p=0.9)
    model = build(tiny_bert_dir, reg)
    one_step(model, reg, toy_batch())
    fresh = build(tiny_bert_dir, Mixout(p=0.9), seed=123)  # different head init
    fresh.load_state_dict(model.state_dict())  # strict: same keys, targets included
    model.eval(), fresh.eval()
    inputs = {k: v for k, v in toy_batch().items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    for a, b in zip(mixed_linears(model), mixed_linears(fresh)):
        assert torch.equal(a.parametrizations.weight[0].target, b.parametrizations.weight[0].target)
        assert a.parametrizations.weight[0].target.dtype == a.parametrizations.weight.original.dtype


def test_training_reduces_loss(tiny_bert_dir):
    reg = method("mixout", p=0.7)
    model = build(tiny_bert_dir, reg)
    batch = toy_batch(n=32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.eval()
    with torch.no_grad():
        before = model(**batch).loss.item()
    model.train()
    for _ in range(40):
        opt.zero_grad()
        as_stack(reg).training_loss(model, batch).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = model(**batch).loss.item()
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("params, key, text", [
    ({"p": 1.0}, "regularizer.mixout.p", "[0.0, 1.0)"),
    ({"p": -0.1}, "regularizer.mixout.p", "[0.0, 1.0)"),
    ({"p": "high"}, "regularizer.mixout.p", "number"),
    ({"include": ["("]}, "regularizer.mixout.include", "regular expression"),
    ({"exclude": ["[a"]}, "regularizer.mixout.exclude", "regular expression"),
])
def test_bad_parameters_name_key_and_range(params, key, text):
    with pytest.raises(RegularizerConfigError) as err:
        stack("mixout", **params)
    assert key in str(err.value) and text in str(err.value)


def test_patterns_that_select_nothing_fail_clearly(tiny_bert_dir):
    with pytest.raises(RegularizerConfigError, match="regularizer.include"):
        build(tiny_bert_dir, Mixout(include=["no_such_module"]))
