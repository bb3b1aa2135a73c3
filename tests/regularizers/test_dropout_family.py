"""Hidden, attention and very large dropout: which backbone knobs they set, head LR factor, errors."""

from __future__ import annotations

import pytest
import torch

from regbench.regularizers.attention_dropout import AttentionDropout
from regbench.regularizers.base import RegularizerConfigError
from regbench.regularizers.dropout import HiddenDropout
from regbench.regularizers.very_large_dropout import VeryLargeDropout
from tests.regularizers.backbones import make_batch
from tests.regularizers.methods import as_stack


def _t5_attention_rates(model) -> set[float]:
    return {m.dropout for m in model.modules() if type(m).__name__ == "T5Attention"}


def test_hidden_dropout_sets_each_family_key(load_backbone) -> None:
    bert = load_backbone("bert", HiddenDropout(p=0.3))
    assert bert.config.hidden_dropout_prob == 0.3 and bert.config.attention_probs_dropout_prob == 0.1
    assert bert.bert.encoder.layer[0].output.dropout.p == 0.3
    assert load_backbone("bart", HiddenDropout(p=0.3)).config.dropout == 0.3
    t5 = load_backbone("t5", HiddenDropout(p=0.3))
    assert t5.config.dropout_rate == 0.3
    assert _t5_attention_rates(t5) == {0.1}, "T5 attention dropout keeps its rate"
    b2b = load_backbone("bert2bert", HiddenDropout(p=0.3))
    assert b2b.encoder.config.hidden_dropout_prob == 0.3 and b2b.decoder.config.hidden_dropout_prob == 0.3


def test_attention_dropout_sets_each_family_key(load_backbone) -> None:
    bert = load_backbone("bert", AttentionDropout(p=0.4))
    assert bert.config.attention_probs_dropout_prob == 0.4 and bert.config.hidden_dropout_prob == 0.1
    assert bert.bert.encoder.layer[1].attention.self.dropout.p == 0.4
    bart = load_backbone("bart", AttentionDropout(p=0.4))
    assert bart.model.encoder.layers[0].self_attn.dropout == 0.4
    t5 = load_backbone("t5", AttentionDropout(p=0.4))
    assert _t5_attention_rates(t5) == {0.4} and t5.config.dropout_rate == 0.1
    b2b = load_backbone("bert2bert", AttentionDropout(p=0.4))
    assert b2b.decoder.config.attention_probs_dropout_prob == 0.4


def test_attention_dropout_acts_on_attention_probabilities(load_backbone) -> None:
    model = load_backbone("bert", AttentionDropout(p=0.5), attn="eager").train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module is not model.bert.encoder.layer[0].attention.self.dropout:
            module.p = 0.0
    batch = {k: v for k, v in make_batch("bert").items() if k != "labels"}
    torch.manual_seed(0)
    probs = model(**batch, output_attentions=True).attentions[0]
    dropped = (probs == 0) & batch["attention_mask"].bool()[:, None, None, :]
    assert 0.3 < dropped.float().sum() / batch["attention_mask"].sum() / 4 / 10 < 0.7


@pytest.mark.parametrize("name, final, dense", [("bert", "classifier", None),
                                                 ("roberta", "classifier.out_proj", "classifier.dense"),
                                                 ("bart_cls", "classification_head.out_proj", "classification_head.dense")])
def test_very_large_dropout_drops_only_the_features_entering_the_final_linear(load_backbone, name, final, dense):
    model = load_backbone(name, VeryLargeDropout(p=0.9)).train()
    assert model.config.classifier_dropout == 0.0  # the head's own dropout: off (two-layer heads apply it twice)
    modules, inputs = dict(model.named_modules()), {}
    for key in filter(None, (final, dense)):
        modules[key].register_forward_pre_hook(lambda m, args, key=key: inputs.__setitem__(key, args[0].detach()))
    batch = {k: v for k, v in make_batch(name).items() if k != "labels"}
    torch.manual_seed(0)
    with torch.no_grad():
        model(**batch)
    assert 0.85 < (inputs[final] == 0).float().mean() < 0.95  # rate 0.9 on the penultimate features
    if dense:  # the pooled token entering the head's dense layer is not dropped at the large rate
        assert (inputs[dense] == 0).float().mean() < 0.05
    model.eval()
    with torch.no_grad():
        model(**batch)
    assert (inputs[final] == 0).float().mean() < 0.05


def test_head_learning_rate_factor(load_backbone) -> None:
    regularizer = VeryLargeDropout(head_lr_factor=10.0)
    model = load_backbone("bert", regularizer)
    groups = as_stack(regularizer).param_groups(model, lr=1e-3, weight_decay=0.01)
    head = {id(p) for p in model.classifier.parameters()}
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1
        assert group["lr"] == pytest.approx(1e-2 if in_head.pop() else 1e-3)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])
    assert {g["weight_decay"] for g in groups} == {0.0, 0.01}


@pytest.mark.parametrize("cls, params, key", [
    (HiddenDropout, {"p": 1.0}, "p"), (HiddenDropout, {"p": "high"}, "p"),
    (AttentionDropout, {"p": -0.1}, "p"), (VeryLargeDropout, {"p": 1.0}, "p"),
    (VeryLargeDropout, {"head_lr_factor": 0.0}, "head_lr_factor"),
])
def test_bad_parameters_name_the_key(cls, params, key) -> None:
    with pytest.raises(RegularizerConfigError, match=rf"regularizer\.{key}"):
        cls(**params)
