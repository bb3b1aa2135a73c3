"""Mixout's choice for the new output layer (paper Table 3): ``w0`` mixes the fresh head toward its own
random initialisation, ``exclude`` leaves it plain; Table 1's output layer (dropout + wdecay(0)) is
``exclude`` composed with very_large_dropout and wdecay(scope=head)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from regbench.models.structure import classification_head
from regbench.regularizers import RegularizerConfigError
from regbench.regularizers.mixout import MixoutParametrization
from tests.regularizers.backbones import make_batch
from tests.regularizers.methods import stack


def _head_linears(model) -> list[nn.Linear]:
    return [m for m in classification_head(model).module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_w0_mixes_the_head_toward_its_initial_weight(backbone, load_backbone) -> None:
    model = load_backbone(backbone, stack("mixout", p=0.7, head="w0"))
    for linear in _head_linears(model):
        assert parametrize.is_parametrized(linear, "weight")
        mix = linear.parametrizations.weight[0]
        torch.testing.assert_close(mix.target, linear.parametrizations.weight.original.detach())


@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_exclude_leaves_every_head_linear_plain_and_mixes_the_rest(backbone, load_backbone) -> None:
    model = load_backbone(backbone, stack("mixout", p=0.7, head="exclude"))
    head = _head_linears(model)
    assert head and not any(parametrize.is_parametrized(m, "weight") for m in head)
    body = [m for m in model.modules() if isinstance(m, nn.Linear) and all(m is not h for h in head)]
    assert body and all(parametrize.is_parametrized(m, "weight") for m in body)


def test_exclude_is_refused_where_there_is_no_new_head(load_backbone) -> None:
    with pytest.raises(RegularizerConfigError, match="regularizer.mixout.head='exclude'.*no new classification head"):
        load_backbone("bart", stack("mixout", head="exclude"))
    with pytest.raises(RegularizerConfigError, match="regularizer.mixout.head"):
        stack("mixout", head="table1")


def test_table1_output_layer_is_dropout_and_wdecay_zero_on_the_unmixed_head(load_backbone) -> None:
    regularizer = stack(("mixout", {"p": 0.7, "head": "exclude"}), ("very_large_dropout", {"p": 0.5}),
                        ("wdecay", {"target": "zero", "strength": 1.0, "scope": "head", "form": "penalty"}))
    model = load_backbone("bert", regularizer).train()
    classifier = model.classifier
    assert not parametrize.is_parametrized(classifier, "weight")
    assert any(isinstance(m, MixoutParametrization) for m in model.bert.modules())
    seen = []
    classifier.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    batch = make_batch("bert")
    loss = regularizer.training_loss(model, batch)
    assert (seen[0] == 0).any(), "no dropout before the head"
    penalty = regularizer.members[2].penalty(model)
    torch.testing.assert_close(penalty, 0.5 * classifier.weight.detach().pow(2).sum())  # head only, toward 0
    loss.backward()
    assert classifier.weight.grad is not None
