"""Every regularizer option on decoder-only backbones (tiny GPT-2, Llama, Qwen2; sequence classification
and causal LM), saved and reloaded through ``from_pretrained``: it acts in a training step (the contract
matrix's probes), eval is exactly the unregularized model where it is train-only, or it refuses with
an error naming why. Plus TLM's mask on causal self-attention (every decoder layer, AND causal, the
first position never empty) and LoRA's per-family targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from regbench.models.structure import UnsupportedBackboneError, attention_layers, blocks
from regbench.regularizers import RegularizerConfigError
from tests.decoder_fixtures import FAMILIES, save_tiny_decoder, tiny_tokenizer
from tests.regularizers.methods import METHODS, method, stack
from tests.regularizers.test_contract import CAPABILITIES

DECODERS = [f"{family}_{head}" for family in FAMILIES for head in ("cls", "lm")]
# (method, backbone) pairs that cannot act and must refuse: Llama/Qwen2 have no hidden dropout; head
# methods need a classification head (causal LMs have none).
# R-Drop (branch `methods`) needs dropout to differ between its two passes: Llama/Qwen2 ship with none
# (regularizer=[attention_dropout,rdrop] makes it act); it refuses at the first training step.
REFUSALS = {("dropout", "llama"): "no hidden-dropout key", ("dropout", "qwen2"): "no hidden-dropout key",
            ("rdrop", "llama"): "identical outputs", ("rdrop", "qwen2"): "identical outputs"}


def _expected_refusal(name: str, backbone: str) -> str | None:
    family, head = backbone.split("_")
    if head == "lm" and "classification_head" in method(name).requires:
        return "classif"
    return REFUSALS.get((name, family))


@pytest.fixture(scope="module")
def saved_decoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {family: save_tiny_decoder(tmp_path_factory.mktemp(family), family) for family in FAMILIES}


def load(saved: dict[str, Path], backbone: str, regularizer: Any = None) -> Any:
    """The loop's order: pad token and regularizer config edits, from_pretrained, apply."""
    family, head = backbone.split("_")
    path = saved[family]
    config = AutoConfig.from_pretrained(path, **({"num_labels": 2} if head == "cls" else {}))
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id
    if regularizer is not None:
        regularizer.configure_backbone_config(config)
    cls = AutoModelForSequenceClassification if head == "cls" else AutoModelForCausalLM
    torch.manual_seed(0)  # the new classification head's init
    model = cls.from_pretrained(path, config=config, attn_implementation="sdpa")
    return model if regularizer is None else regularizer.apply(model)


def decoder_batch(backbone: str, batch: int = 4, length: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded random ids (pad = eos, as the loop pads decoders) with classification or LM labels."""
    family, head = backbone.split("_")
    tokenizer = tiny_tokenizer(family)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen = torch.Generator().manual_seed(seed)
    real = torch.tensor([length - (b % 3) * 2 for b in range(batch)])
    mask = (torch.arange(length)[None, :] < real[:, None]).long()
    ids = torch.randint(40, len(tokenizer), (batch, length), generator=gen).masked_fill(mask == 0, pad)
    labels = torch.randint(0, 2, (batch,), generator=gen) if head == "cls" else ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("name, backbone", [(n, b) for n in METHODS for b in DECODERS])
def test_every_method_acts_on_decoders_or_refuses(name, backbone, saved_decoders) -> None:
    refusal = _expected_refusal(name, backbone)
    regularizer = stack(name, **CAPABILITIES[name].strong) if name in CAPABILITIES else stack(name)
    if refusal is not None:  # at start-up, or at the first training step (what only a pass can show)
        with pytest.raises((UnsupportedBackboneError, RegularizerConfigError), match=refusal):
            regularizer.training_loss(load(saved_decoders, backbone, regularizer).train(), decoder_batch(backbone))
        return
    batch = decoder_batch(backbone)
    model = load(saved_decoders, backbone, regularizer)
    capability = CAPABILITIES.get(name)
    torch.manual_seed(0)
    model.train()
    if capability is not None and capability.probe is not None:
        with capability.probe(regularizer.members[0], model):
            loss = regularizer.training_loss(model, batch)
            loss.backward()
    else:
        loss = regularizer.training_loss(model, batch)
        loss.backward()
    assert torch.isfinite(loss)
    if method(name).train_only:
        plain = load(saved_decoders, backbone).eval()
        model.eval()
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            assert torch.equal(plain(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("rows", [4, 1], ids=["padded", "unpadded"])  # unpadded: the model passes no mask (is_causal)
@pytest.mark.parametrize("backbone", DECODERS)
def test_tlm_masks_every_decoder_layer_and_keeps_causality(backbone, rows, saved_decoders, record_attention) -> None:
    regularizer = stack("tlm", keep_rate=0.5, mode="self")  # self-masking: the first position would be empty
    model = load(saved_decoders, backbone, regularizer)
    tlm = regularizer.members[0]
    layers = [layer.path for layer in attention_layers(model)]
    assert len(layers) == len(blocks(model)) == 2 and all(layer.kind == "self" and layer.stack == "decoder"
                                                          for layer in attention_layers(model))
    assert sorted(tlm._claimed.values()) == sorted(layers)  # the per-layer guard covers every decoder layer
    batch = decoder_batch(backbone, batch=rows)
    recorder = record_attention(model)
    model.train()
    torch.manual_seed(1)
    regularizer.training_loss(model, batch)
    assert tlm._checked  # the guard saw every claimed layer go through the hook
    masks = recorder.masks()
    assert sorted(path for path, _ in masks) == sorted(layers)
    length = batch["input_ids"].shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    real = batch["attention_mask"].bool()
    for path, mask in masks:
        allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
        allowed = allowed[:, 0]
        assert not (allowed & ~causal).any(), f"{path}: TLM let a position see the future"
        assert allowed.any(-1).all(), f"{path}: a row was left with nothing to attend to"
        assert torch.equal(allowed[:, 0], torch.eye(length, dtype=torch.bool)[0].expand(len(allowed), -1)), \
            f"{path}: the first position must attend to itself"
        keys_real = allowed & ~real[:, None, :]
        rows_real = real[:, :, None].expand_as(allowed)
        assert not (keys_real & rows_real).any(), f"{path}: a real token attends to padding"
        assert (~allowed & causal & real[:, None, :] & rows_real).any(), f"{path}: TLM masked nothing"


@pytest.mark.parametrize("family, targets", [("gpt2", {"c_attn"}), ("llama", {"q_proj", "v_proj"}),
                                             ("qwen2", {"q_proj", "v_proj"})])
def test_lora_targets_per_family(family, targets, saved_decoders) -> None:
    from peft.tuners.lora import LoraLayer

    for head in ("cls", "lm"):
        model = load(saved_decoders, f"{family}_{head}", stack("lora_dropout", r=2, p=0.3))
        adapted = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}
        assert adapted == targets
        n_blocks = len(blocks(model))
        assert sum(isinstance(m, LoraLayer) for m in model.modules()) == n_blocks * len(targets)
        if head == "cls":  # the new score head trains (PEFT modules_to_save)
            assert any("score" in n and p.requires_grad for n, p in model.named_parameters())


def test_mixout_mixes_gpt2_conv1d_by_input_neuron(saved_decoders) -> None:
    from transformers.pytorch_utils import Conv1D

    from regbench.regularizers.mixout import Conv1DMixoutParametrization

    model = load(saved_decoders, "gpt2_cls", stack("mixout", p=0.5))
    convs = [m for m in model.modules() if isinstance(m, Conv1D)]
    assert convs and all(isinstance(m.parametrizations.weight[0], Conv1DMixoutParametrization) for m in convs)
    assert model.config.resid_pdrop == model.config.embd_pdrop == model.config.attn_pdrop == 0.0
    model.train()
    model(**decoder_batch("gpt2_cls"))
    for conv in convs:
        mask = conv.parametrizations.weight[0].last_mask
        assert mask.shape == (conv.weight.shape[0], 1)  # one decision per input neuron (a row of W)


def test_hidden_dropout_sets_both_gpt2_rates(saved_decoders) -> None:
    model = load(saved_decoders, "gpt2_lm", stack("dropout", p=0.25))
    assert model.config.resid_pdrop == model.config.embd_pdrop == 0.25


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_dropout_generation_ensemble_on_decoders(family, saved_decoders) -> None:
    """Every decoding step runs the N members on the whole prefix (prompt + generated, left-padded)."""
    from regbench.models.structure import task_model

    regularizer = stack("lora_dropout", r=2, p=0.5, ensemble_passes=3)
    model = load(saved_decoders, f"{family}_lm", regularizer).eval()
    calls: list[int] = []
    task_model(model).register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["input_ids"].shape[1]),
                                            with_kwargs=True)
    batch = decoder_batch(f"{family}_lm", batch=2, length=6)
    ids, mask = batch["input_ids"].flip(1), batch["attention_mask"].flip(1)  # left padding, as generation pads
    pad = model.config.pad_token_id
    out = regularizer.generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=3, min_new_tokens=3,
                               do_sample=False, pad_token_id=pad, eos_token_id=None)
    assert out.shape == (2, 9)
    assert calls == [6, 6, 6, 7, 7, 7, 8, 8, 8]  # 3 members per step, each on the full prefix


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_replays_the_regularizers_masks(family, saved_decoders) -> None:
    """backbone.gradient_checkpointing: the recomputed blocks draw the same TLM/DropHead masks and dropout
    (torch restores the RNG state), so the gradients equal those without checkpointing."""
    from omegaconf import OmegaConf

    from regbench.models.causal_lm import prepare_decoder_model

    grads = []
    for checkpointing in (False, True):
        regularizer = stack(("tlm", {"keep_rate": 0.6, "attention_dropout": 0.2}), ("drophead", {"p": 0.3}))
        model = load(saved_decoders, f"{family}_lm", regularizer)
        prepare_decoder_model(model, tiny_tokenizer(family),
                              OmegaConf.create({"gradient_checkpointing": checkpointing}))
        assert model.is_activation_checkpointing == checkpointing
        model.train()
        torch.manual_seed(3)
        regularizer.training_loss(model, decoder_batch(f"{family}_lm")).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", METHODS)
def test_causal_lm_task_kinds_honour_what_each_method_needs_or_refuse_it(name) -> None:
    """Start-up check against the decoder LightningModules: methods needing a classification head are
    refused for data-to-text and instruction tuning; every other method is accepted."""
    from regbench.models.causal_lm import CausalLMGenerationModule, InstructionModule

    regularizer = stack(name, **CAPABILITIES[name].strong) if name in CAPABILITIES else stack(name)
    for module_cls, kind in ((CausalLMGenerationModule, "generation"), (InstructionModule, "instruction")):
        if "classification_head" in method(name).requires:
            with pytest.raises(RegularizerConfigError, match="classification_head.*does not honour"):
                regularizer.check_task(module_cls, kind)
        else:
            regularizer.check_task(module_cls, kind)
    if name == "lora_dropout":  # the ensemble acts through generate (d2t) and predict_logits (MMLU scoring)
        ensemble = stack(name, ensemble_passes=4, p=0.2)
        ensemble.check_task(CausalLMGenerationModule, "generation")
        ensemble.check_task(InstructionModule, "instruction")
