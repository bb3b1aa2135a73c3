"""Several regularizers in one run (methods.md, "Combining regularizers"): every compatible pair trains
a tiny model with each member demonstrably acting, impossible pairs are refused with the reason, an
all-train-only pair evaluates as the unregularized model, and the hooks compose in the stated order."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
import torch

from regbench.regularizers import Regularizer, RegularizerConfigError, RegularizerStack
from tests.regularizers.backbones import make_batch
from tests.regularizers.methods import METHODS, method, stack
from tests.regularizers import test_contract
from tests.regularizers.test_contract import CAPABILITIES

ACTING = [name for name in METHODS if name != "none"]
# Pairs that cannot work, with a fragment of the reason the refusal must give.
INCOMPATIBLE = {
    frozenset({"lora", "lora_dropout"}): "wrap the model in PEFT",
    frozenset({"mixout", "lora"}): "freezes",
    frozenset({"mixout", "lora_dropout"}): "freezes",
    frozenset({"dropout", "mixout"}): "hidden_dropout",
    frozenset({"attention_dropout", "mixout"}): "attention_dropout",
    frozenset({"attention_dropout", "tlm"}): "attention_dropout",
    frozenset({"wdecay", "lora"}): "freezes",
    frozenset({"wdecay", "lora_dropout"}): "freezes",
    frozenset({"mixout", "rdrop"}): "needs dropout on",
}
PAIRS = list(itertools.permutations(ACTING, 2))
COMPATIBLE = [pair for pair in PAIRS if frozenset(pair) not in INCOMPATIBLE]


def _pair(first: str, second: str) -> RegularizerStack:
    return stack((first, CAPABILITIES[first].strong), (second, CAPABILITIES[second].strong))


@pytest.mark.parametrize("first, second", COMPATIBLE, ids=lambda name: name)
def test_a_compatible_pair_trains_and_each_member_acts(first, second, load_backbone, monkeypatch) -> None:
    regularizer = _pair(first, second)
    assert regularizer.name == f"{first}+{second}"
    model = load_backbone("bert", regularizer)
    layerdrop = next((m for m in regularizer.members if m.name == "layerdrop"), None)
    if layerdrop is not None:  # skip one of the two blocks: LayerDrop acts, the other member acts on the rest
        monkeypatch.setattr(layerdrop, "draw", lambda: [False, True])
        monkeypatch.setattr(test_contract, "SKIPPED", lambda: layerdrop.last_skipped)
    optimizer = torch.optim.AdamW(regularizer.param_groups(model, 1e-3, 0.01))
    batch = make_batch("bert")
    torch.manual_seed(0)
    for step in range(3):
        optimizer.zero_grad()
        model.train()
        regularizer.on_train_step(step, 3)
        with contextlib.ExitStack() as probes:
            if step == 2:  # each member's own evidence, in the same step
                for member in regularizer.members:
                    probes.enter_context(CAPABILITIES[member.name].probe(member, model))
            loss = regularizer.training_loss(model, batch)
            loss.backward()
        assert torch.isfinite(loss)
        regularizer.before_optimizer_step(model, optimizer)
        optimizer.step()


@pytest.mark.parametrize("pair", sorted(INCOMPATIBLE, key=sorted), ids=lambda pair: "+".join(sorted(pair)))
def test_an_impossible_pair_is_refused_with_the_reason(pair) -> None:
    first, second = sorted(pair)
    for names in ((first, second), (second, first)):
        with pytest.raises(RegularizerConfigError, match=INCOMPATIBLE[pair]) as err:
            stack(*names)
        assert first in str(err.value) and second in str(err.value)


def test_none_cannot_be_combined_and_a_method_cannot_repeat() -> None:
    with pytest.raises(RegularizerConfigError, match="'none' cannot be combined"):
        stack("none", "tlm")
    with pytest.raises(RegularizerConfigError, match="listed twice"):
        RegularizerStack([method("tlm"), method("tlm")])


@pytest.mark.parametrize("first, second", [p for p in COMPATIBLE if p[0] < p[1] and method(p[0]).train_only
                                           and method(p[1]).train_only], ids=lambda name: name)
def test_eval_of_a_train_only_pair_is_the_unregularized_model(first, second, load_backbone) -> None:
    batch = {k: v for k, v in make_batch("bert").items() if k != "labels"}
    plain = load_backbone("bert").eval()
    model = load_backbone("bert", _pair(first, second)).eval()
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("backbone", ["bert2bert", "bart", "t5"])
def test_tlm_then_drophead_both_act_on_every_layer_they_claim(backbone, load_backbone, record_attention) -> None:
    """The attention hooks chain: TLM's mask reaches the backbone's attention and DropHead scales the
    output, on every claimed layer of encoder and decoder (the guard checks both after the first pass)."""
    regularizer = stack(("tlm", {"keep_rate": 0.5}), ("drophead", {"p": 0.5}))
    tlm, drophead = regularizer.members
    model = load_backbone(backbone, regularizer).train()
    recorder = record_attention(model)
    with CAPABILITIES["tlm"].probe(tlm, model), CAPABILITIES["drophead"].probe(drophead, model):
        regularizer.training_loss(model, make_batch(backbone))
    assert tlm._checked and drophead._checked  # every claimed layer went through each hook
    assert len(drophead._claimed) > len(tlm._claimed) > 0  # DropHead claims cross-attention too
    masked = [path for path, mask in recorder.masks() if mask is not None and not bool(mask.all())]
    assert set(tlm._claimed.values()) <= set(masked)


class _Recorder(Regularizer):
    """A test method recording the order in which the stack calls it."""

    log: list[str] = []

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.name = tag

    def configure_backbone_config(self, config: Any) -> None:
        self.log.append(f"config:{self.tag}")

    def apply(self, model: Any) -> Any:
        self.log.append(f"apply:{self.tag}")
        return model

    def wrap_forward(self, forward):
        def wrapped(batch):
            self.log.append(f"enter:{self.tag}")
            outputs = forward(batch)
            self.log.append(f"exit:{self.tag}")
            return outputs

        return wrapped

    def penalty(self, model: Any) -> Any:
        return torch.tensor(1.0 if self.tag == "a" else 10.0)


class _TwoPasses(_Recorder):
    """A loss owner (R-Drop-like): two calls of the wrapped forward, mean of their losses."""

    def training_loss(self, forward, batch):
        self.log.append("owner")
        return (forward(batch).loss + forward(batch).loss) / 2


def test_hooks_run_in_listed_order_and_the_loss_owner_wraps_every_members_pass(load_backbone) -> None:
    _Recorder.log = []
    regularizer = RegularizerStack([_Recorder("a"), _TwoPasses("b")])
    model = load_backbone("bert", regularizer)
    batch = make_batch("bert")
    model.eval()
    with torch.no_grad():
        plain_loss = model(**batch).loss
        loss = regularizer.training_loss(model, batch)
    assert _Recorder.log == ["config:a", "config:b", "apply:a", "apply:b", "owner",
                             "enter:a", "enter:b", "exit:b", "exit:a", "enter:a", "enter:b", "exit:b", "exit:a"]
    torch.testing.assert_close(loss, plain_loss + 11.0)  # owner's mean of two passes + both penalties, once
    with pytest.raises(RegularizerConfigError, match="b and c both compute the training loss"):
        RegularizerStack([_TwoPasses("b"), _TwoPasses("c")])


def test_before_optimizer_step_sees_the_optimizer_with_its_groups(load_backbone) -> None:
    class Decoupled(Regularizer):
        """A decoupled update (wdecay-like): w <- w - lr * lambda * w, with each group's lr."""

        def before_optimizer_step(self, model, optimizer):
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.mul_(1 - group["lr"] * 0.5)

    regularizer = RegularizerStack([Decoupled()])
    model = load_backbone("bert", regularizer)
    optimizer = torch.optim.SGD(regularizer.param_groups(model, 0.1, 0.0), lr=0.0)
    before = model.classifier.weight.detach().clone()
    regularizer.training_loss(model, make_batch("bert")).backward()
    regularizer.before_optimizer_step(model, optimizer)
    torch.testing.assert_close(model.classifier.weight, before * 0.95)


def test_rdrop_wraps_every_members_pass(load_backbone) -> None:
    """R-Drop owns the loss and calls the fully wrapped pass twice: TLM masks twice per claimed layer,
    LayerDrop draws twice, wdecay's penalty is added once."""
    from unittest import mock

    from regbench.regularizers import tlm as tlm_module

    regularizer = stack(("tlm", {"keep_rate": 0.5}), ("layerdrop", {"p": 0.5}),
                        ("wdecay", {"target": "zero", "form": "penalty", "strength": 1.0}), ("rdrop", {"alpha": 1.0}))
    tlm, layerdrop, wdecay, _ = regularizer.members
    model = load_backbone("bert", regularizer).train()
    layerdrop.draw = lambda: [False, False]
    batch = make_batch("bert")
    torch.manual_seed(1)
    with mock.patch.object(tlm_module, "tlm_attention_mask", wraps=tlm_module.tlm_attention_mask) as spy:
        loss = regularizer.training_loss(model, batch)
    assert spy.call_count == 2 * len(tlm._claimed) and layerdrop.passes == 2
    without_wdecay = RegularizerStack(regularizer.members[:2] + regularizer.members[3:])
    torch.manual_seed(1)  # the same masks: the difference is the penalty, added once (not once per pass)
    torch.testing.assert_close(loss, without_wdecay.training_loss(model, batch) + wdecay.penalty(model))
    assert float(wdecay.penalty(model)) > 0


def test_the_attention_guard_checks_blocks_layerdrop_skipped_in_a_later_pass(load_backbone) -> None:
    regularizer = stack(("layerdrop", {"p": 0.5}), ("tlm", {"keep_rate": 0.5}))
    layerdrop, tlm = regularizer.members
    model = load_backbone("bert2bert", regularizer).train()
    batch = make_batch("bert2bert")
    skip_first = [True] + [False] * (len(layerdrop._blocks) - 1)
    layerdrop.draw = lambda: skip_first
    regularizer.training_loss(model, batch)
    assert not tlm._checked  # the skipped block's attention has not run yet: not counted as missed
    layerdrop.draw = lambda: [False] * len(layerdrop._blocks)
    regularizer.training_loss(model, batch)
    assert tlm._checked
