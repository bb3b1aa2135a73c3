"""R-Drop (arXiv 2106.14448): the loss equals a hand computation on fixed logits (classification,
regression, seq2seq with padding), the two passes differ, α = 0 is the sum / mean of two ordinary
passes, it wraps the other members' passes, and it refuses a model without dropout."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from regbench.regularizers import RegularizerConfigError
from tests.regularizers.backbones import make_batch
from tests.regularizers.methods import stack


def _fixed_forward(*outputs):
    calls = iter(outputs)
    return lambda batch: next(calls)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_classification_loss_equals_a_hand_computation(reduction) -> None:
    logits1 = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    logits2 = [[1.0, 1.0, 0.0], [-1.0, 2.0, 0.5]]
    out1 = SimpleNamespace(loss=torch.tensor(0.7), logits=torch.tensor(logits1))
    out2 = SimpleNamespace(loss=torch.tensor(0.9), logits=torch.tensor(logits2))
    member = stack("rdrop", alpha=0.5, reduction=reduction).members[0]
    loss = member.training_loss(_fixed_forward(out1, out2), {"labels": torch.tensor([0, 1])})
    kl = [0.5 * (_kl(_softmax(a), _softmax(b)) + _kl(_softmax(b), _softmax(a))) for a, b in zip(logits1, logits2)]
    task = 0.7 + 0.9 if reduction == "sum" else (0.7 + 0.9) / 2
    assert float(loss) == pytest.approx(task + 0.5 * sum(kl) / 2, rel=1e-6)


def test_regression_uses_the_squared_difference_of_the_two_predictions() -> None:
    out1 = SimpleNamespace(loss=torch.tensor(1.0), logits=torch.tensor([[0.5], [2.0]]))
    out2 = SimpleNamespace(loss=torch.tensor(2.0), logits=torch.tensor([[1.5], [1.0]]))
    member = stack("rdrop", alpha=0.7, reduction="mean").members[0]
    loss = member.training_loss(_fixed_forward(out1, out2), {"labels": torch.tensor([1.0, 2.0])})
    assert float(loss) == pytest.approx(1.5 + 0.7 * (1.0 + 1.0) / 2)


def test_seq2seq_kl_is_per_target_token_over_non_padding_positions() -> None:
    torch.manual_seed(0)
    logits1, logits2 = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    labels = torch.tensor([[4, 2, -100], [1, -100, -100]])
    out1 = SimpleNamespace(loss=torch.tensor(1.0), logits=logits1)
    out2 = SimpleNamespace(loss=torch.tensor(1.0), logits=logits2)
    member = stack("rdrop", alpha=1.0, reduction="sum").members[0]
    loss = member.training_loss(_fixed_forward(out1, out2), {"labels": labels})
    kl = [0.5 * (_kl(_softmax(a), _softmax(b)) + _kl(_softmax(b), _softmax(a)))
          for a, b in ((logits1[0, 0].tolist(), logits2[0, 0].tolist()), (logits1[0, 1].tolist(), logits2[0, 1].tolist()),
                       (logits1[1, 0].tolist(), logits2[1, 0].tolist()))]
    assert float(loss) == pytest.approx(2.0 + sum(kl) / 3, rel=1e-5)


@pytest.mark.parametrize("backbone", ["bert", "bart"])
def test_the_two_passes_differ_and_alpha_zero_is_two_ordinary_passes(backbone, load_backbone) -> None:
    batch = make_batch(backbone)
    for reduction in ("sum", "mean"):
        regularizer = stack("rdrop", alpha=0.0, reduction=reduction)
        model = load_backbone(backbone, regularizer).train()
        seen = []
        torch.manual_seed(3)
        original = model.forward
        model.forward = lambda *a, **k: seen.append(original(*a, **k)) or seen[-1]
        loss = regularizer.training_loss(model, batch)
        model.forward = original
        assert len(seen) == 2 and not torch.equal(seen[0].logits, seen[1].logits), "the passes share dropout masks"
        torch.manual_seed(3)
        first, second = model(**batch).loss, model(**batch).loss
        expected = first + second if reduction == "sum" else (first + second) / 2
        torch.testing.assert_close(loss, expected, rtol=0, atol=0)


def test_alpha_adds_the_consistency_term_and_it_has_gradients(load_backbone) -> None:
    batch = make_batch("bert")
    regularizer = stack("rdrop", alpha=1.0)
    model = load_backbone("bert", regularizer).train()
    torch.manual_seed(3)
    loss = regularizer.training_loss(model, batch)
    torch.manual_seed(3)
    task = model(**batch).loss + model(**batch).loss
    assert float(loss) > float(task)
    loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0


def test_members_that_turn_all_dropout_off_are_refused_when_the_stack_is_built() -> None:
    with pytest.raises(RegularizerConfigError, match="rdrop needs dropout on.*dropout and attention_dropout"):
        stack(("dropout", {"p": 0.0}), ("attention_dropout", {"p": 0.0}), ("rdrop", {}))
    with pytest.raises(RegularizerConfigError, match="rdrop needs dropout on.*mixout"):
        stack("rdrop", "mixout")
    stack(("dropout", {"p": 0.0}), ("rdrop", {}))  # attention dropout still draws masks


def test_identical_passes_refuse_at_the_first_step() -> None:
    """A backbone whose own config has no dropout: both passes give the same output."""
    same = SimpleNamespace(loss=torch.tensor(1.0), logits=torch.tensor([[1.0, 2.0]]))
    member = stack("rdrop").members[0]
    with pytest.raises(RegularizerConfigError, match="needs dropout on"):
        member.training_loss(_fixed_forward(same, same), {"labels": torch.tensor([0])})


def test_rdrop_cannot_share_loss_ownership() -> None:
    with pytest.raises(RegularizerConfigError, match="compute the training loss"):
        stack(("lora_dropout", {"train_passes": 2}), ("rdrop", {}))
    with pytest.raises(RegularizerConfigError, match="regularizer.rdrop.reduction"):
        stack("rdrop", reduction="avg")
