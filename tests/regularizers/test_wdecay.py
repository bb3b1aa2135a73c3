"""wdecay (Mixout paper's wdecay(u, λ); L2-SP): the gradient is the analytic λ(w − u) for both targets,
the new head is pulled toward 0, biases and norms are left alone, and the decoupled form moves the
weights by lr·λ·(w − u) before the optimizer step."""

from __future__ import annotations

import pytest
import torch

from regbench.models.structure import classification_head
from regbench.regularizers import RegularizerConfigError
from tests.regularizers.backbones import make_batch
from tests.regularizers.methods import stack


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("target", ["zero", "pretrained"])
def test_gradient_is_the_analytic_one(target, load_backbone) -> None:
    strength = 0.3
    regularizer = stack("wdecay", target=target, strength=strength, form="penalty")
    model = load_backbone("bert", regularizer).eval()  # eval: no dropout, so the two passes match exactly
    pretrained = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # move away from w_pre so that w − w_pre is not 0
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = make_batch("bert")
    model(**batch).loss.backward()
    plain = _grads(model)
    model.zero_grad()
    regularizer.training_loss(model, batch).backward()
    head = {id(p) for p in classification_head(model).module.parameters()}
    checked = 0
    for name, param in model.named_parameters():
        decayed = not any(k in name for k in ("bias", "LayerNorm"))
        if target == "zero" or id(param) in head:
            u = torch.zeros_like(param)
        else:
            u = pretrained[name]
        expected = plain[name] + (strength * (param.detach() - u) if decayed else 0)
        torch.testing.assert_close(param.grad, expected, rtol=1e-5, atol=1e-7, msg=name)
        checked += decayed
    assert checked > 10


def test_the_head_is_pulled_toward_zero_and_pretrained_weights_toward_themselves(load_backbone) -> None:
    regularizer = stack("wdecay", target="pretrained", strength=1.0, form="penalty")
    model = load_backbone("bert", regularizer)
    head_weight = classification_head(model).final.weight
    expected = 0.5 * head_weight.detach().pow(2).sum()  # w = w_pre elsewhere: only the head contributes
    torch.testing.assert_close(regularizer.members[0].penalty(model), expected)


def test_scope_head_decays_only_the_new_output_layer(load_backbone) -> None:
    regularizer = stack("wdecay", target="zero", strength=1.0, scope="head", form="penalty")
    model = load_backbone("bert", regularizer)
    regularizer.members[0].penalty(model).backward()
    graded = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert graded == {"classifier.weight"}


def test_decoupled_form_moves_weights_by_lr_lambda_before_the_step(load_backbone) -> None:
    regularizer = stack("wdecay", target="zero", strength=0.5, form="decoupled")
    member = regularizer.members[0]
    assert "before_optimizer_step" in member.needs() and "penalty" not in member.needs()
    model = load_backbone("bert", regularizer)
    optimizer = torch.optim.SGD(regularizer.param_groups(model, 0.1, 0.0), lr=0.0)
    weight = model.classifier.weight.detach().clone()
    bias = model.classifier.bias.detach().clone()
    assert member.penalty(model) is None
    regularizer.before_optimizer_step(model, optimizer)
    torch.testing.assert_close(model.classifier.weight, weight * (1 - 0.1 * 0.5))
    torch.testing.assert_close(model.classifier.bias, bias)


def test_bad_values_and_peft_are_refused() -> None:
    with pytest.raises(RegularizerConfigError, match="regularizer.wdecay.target"):
        stack("wdecay", target="w_pre")
    with pytest.raises(RegularizerConfigError, match="regularizer.wdecay.strength"):
        stack("wdecay", strength=-1.0)
    with pytest.raises(RegularizerConfigError, match="freezes"):
        stack("wdecay", "lora")


def test_decoupled_toward_zero_is_adamw_weight_decay(load_backbone) -> None:
    """form=decoupled, target=zero (the default form) == torch AdamW's own weight_decay on the same groups."""
    batch = make_batch("bert")
    results = []
    for use_wdecay in (True, False):
        regularizer = stack("wdecay", target="zero", strength=0.3) if use_wdecay else stack("none")
        # float64: the two forms round differently by an ulp, and Adam would amplify that on the near-zero
        # gradients of the attention key biases
        model = load_backbone("bert", regularizer).eval().double()
        groups = regularizer.param_groups(model, 1e-2, 0.0 if use_wdecay else 0.3)
        optimizer = torch.optim.AdamW(groups)
        for _ in range(3):
            optimizer.zero_grad()
            regularizer.training_loss(model, batch).backward()
            regularizer.before_optimizer_step(model, optimizer)
            optimizer.step()
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
    for name, value in results[0].items():
        torch.testing.assert_close(value, results[1][name], rtol=1e-9, atol=1e-10, msg=name)


def test_decoupled_toward_pretrained_pulls_back_by_lr_lambda_of_the_distance(load_backbone) -> None:
    regularizer = stack("wdecay", target="pretrained", strength=0.5)
    model = load_backbone("bert", regularizer)
    query = model.bert.encoder.layer[0].attention.self.query.weight
    pretrained = query.detach().clone()
    with torch.no_grad():
        query.add_(1.0)
    optimizer = torch.optim.SGD(regularizer.param_groups(model, 0.1, 0.0), lr=0.0)
    regularizer.before_optimizer_step(model, optimizer)
    torch.testing.assert_close(query.detach(), pretrained + 1.0 - 0.1 * 0.5 * 1.0)
