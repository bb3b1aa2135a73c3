"""LayerDrop (arXiv 1909.11556): the empirical skip rate is p, a skipped block is exactly the identity
(T5 hands its position biases on), every stack of every family is covered, eval and generation run every
block, BART's native LayerDrop is off, and DDP is told to allow unused parameters (or refuses)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from regbench.hardware import allow_unused_parameters
from regbench.models.structure import blocks
from regbench.regularizers import RegularizerConfigError
from tests.regularizers.backbones import make_batch
from tests.regularizers.methods import stack


def _executed(member) -> tuple[set[str], list]:
    ran: set[str] = set()
    handles = [linear.register_forward_hook(lambda m, a, o, path=b.path: ran.add(path))
               for b in member._blocks for linear in b.module.modules() if isinstance(linear, torch.nn.Linear)]
    return ran, handles


def test_empirical_skip_rate_is_p_and_skipped_blocks_do_not_run(load_backbone) -> None:
    regularizer = stack("layerdrop", p=0.3)
    member = regularizer.members[0]
    model = load_backbone("bert", regularizer).train()
    batch = make_batch("bert", batch=2, length=6)
    ran, _ = _executed(member)
    executed = 0
    with torch.no_grad():
        for _ in range(150):
            ran.clear()
            regularizer.training_loss(model, batch)
            assert ran == {b.path for b in member._blocks} - set(member.last_skipped)  # one draw, shared by the batch
            executed += len(ran)
    draws = [member.draw() for _ in range(2000)]
    rate = sum(map(sum, draws)) / (2000 * len(member._blocks))
    assert abs(rate - 0.3) < 0.03
    assert member.passes == 150 and abs(member.skipped / 300 - 0.3) < 0.1 and executed == 300 - member.skipped


def test_a_skipped_block_is_the_identity_without_rescaling(load_backbone, monkeypatch) -> None:
    no_dropout = (("dropout", {"p": 0.0}), ("attention_dropout", {"p": 0.0}))
    regularizer = stack(*no_dropout, ("layerdrop", {"p": 0.5}))
    member = regularizer.members[-1]
    model = load_backbone("bert", regularizer).train()
    reference = load_backbone("bert", stack(*no_dropout)).train()
    reference.bert.encoder.layer = torch.nn.ModuleList([reference.bert.encoder.layer[1]])  # block 0 removed
    monkeypatch.setattr(member, "draw", lambda: [True, False])
    batch = make_batch("bert")
    torch.testing.assert_close(regularizer.training_loss(model, batch), reference(**batch).loss, rtol=0, atol=0)


@pytest.mark.parametrize("backbone", ["bart", "t5", "bert2bert", "roberta"])
def test_every_stack_is_covered_and_skipping_every_block_still_trains(backbone, load_backbone, monkeypatch) -> None:
    regularizer = stack("layerdrop", p=0.5)
    member = regularizer.members[0]
    model = load_backbone(backbone, regularizer).train()
    found = blocks(model)
    stacks = {b.stack for b in member._blocks}
    assert stacks == ({"encoder", "decoder"} if backbone != "roberta" else {"encoder"})
    kept = [b.path for b in found if not b.skippable]
    assert kept == ([b.path for b in found if b.index == 0] if backbone == "t5" else [])  # T5: the bias owners
    assert {b.path for b in member._blocks} == {b.path for b in found} - set(kept)
    monkeypatch.setattr(member, "draw", lambda: [True] * len(member._blocks))
    ran, _ = _executed(member)
    loss = regularizer.training_loss(model, make_batch(backbone))
    assert torch.isfinite(loss) and ran == set()
    loss.backward()
    assert all(p.grad is None for b in member._blocks for p in b.module.parameters())  # unused: DDP must allow it


def test_eval_and_generation_run_every_block(load_backbone, monkeypatch) -> None:
    regularizer = stack("layerdrop", p=0.9)
    member = regularizer.members[0]
    model = load_backbone("bart", regularizer)
    plain = load_backbone("bart").eval()
    monkeypatch.setattr(member, "draw", lambda: [True] * len(member._blocks))
    model.eval()
    batch = make_batch("bart")
    with torch.no_grad():
        forward = member.wrap_forward(lambda b: model(**b))  # even inside a wrapped pass: eval mode skips nothing
        torch.testing.assert_close(forward(batch).logits, plain(**batch).logits, rtol=0, atol=0)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        assert torch.equal(model.generate(**inputs, max_new_tokens=4), plain.generate(**inputs, max_new_tokens=4))


def test_bart_native_layerdrop_is_turned_off(saved_backbones) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(saved_backbones["bart"])
    config.encoder_layerdrop = config.decoder_layerdrop = 0.4
    stack("layerdrop").configure_backbone_config(config)
    assert config.encoder_layerdrop == 0.0 and config.decoder_layerdrop == 0.0


@pytest.mark.parametrize("strategy, devices, expected", [
    ("ddp", 2, "ddp_find_unused_parameters_true"), ("ddp_spawn", 2, "ddp_spawn_find_unused_parameters_true"),
    ("auto", 4, "ddp_find_unused_parameters_true"), ("auto", 1, "auto"),
    ("ddp_find_unused_parameters_true", 2, "ddp_find_unused_parameters_true")])
def test_ddp_strategies_are_told_to_allow_unused_parameters(strategy, devices, expected) -> None:
    hardware = OmegaConf.create({"accelerator": "cpu", "devices": devices, "strategy": strategy, "num_nodes": 1})
    OmegaConf.set_struct(hardware, True)
    allow_unused_parameters(hardware, "layerdrop")
    assert hardware.strategy == expected


def test_a_ddp_strategy_object_gets_the_flag_and_sharded_strategies_are_refused() -> None:
    hardware = OmegaConf.create({"devices": 2, "strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy"}})
    assert "find_unused_parameters=true" in allow_unused_parameters(hardware, "layerdrop")
    assert hardware.strategy.find_unused_parameters is True
    for strategy in ("deepspeed_stage_2", {"_target_": "lightning.pytorch.strategies.FSDPStrategy"}):
        with pytest.raises(RegularizerConfigError, match="hardware.strategy.*layerdrop skips blocks"):
            allow_unused_parameters(OmegaConf.create({"devices": 4, "strategy": strategy}), "layerdrop skips blocks")
    assert stack("layerdrop").leaves_parameters_unused() and not stack("tlm").leaves_parameters_unused()
