"""Where things are inside a Hugging Face model, for every supported family: the transformer blocks of
each stack (encoder / decoder), their attention layers (self vs cross), the classification head and
its final linear layer. Regularizers (attention hooks and their first-step guard, very large dropout,
LayerDrop) and the FSDP wrap policy ask this module instead of recognising module names themselves.

A *family root* is the outermost ``PreTrainedModel`` of a known ``model_type``: the whole model for
``BertForSequenceClassification``; ``encoder`` and ``decoder`` of an ``EncoderDecoderModel``
(BERT2BERT); ``base_model.model`` under a PEFT wrapper. Below a root, :data:`LAYOUTS` says where the
block lists are (by path suffix) and where a block keeps its attention layers:

==========  =================================  ======================  ==========================
family      block lists (stack)                self-attention          cross-attention
==========  =================================  ======================  ==========================
BERT,       ``encoder.layer`` (encoder, or      ``attention.self``      ``crossattention.self``
RoBERTa     decoder when ``config.is_decoder``)
BART        ``encoder.layers``, ``decoder.layers``  ``self_attn``        ``encoder_attn``
T5          ``encoder.block``, ``decoder.block``    ``layer.0.SelfAttention``  ``layer.1.EncDecAttention``
GPT-2       ``h`` (decoder)                    ``attn``                (``crossattention``)
Llama,      ``layers`` (decoder)               ``self_attn``           none
Qwen2
==========  =================================  ======================  ==========================

Decoder-only families (GPT-2, Llama, Qwen2) have one stack, ``decoder``, of causal self-attention
blocks. Adding a family is one :class:`Layout` entry (and its ``DECODER_ONLY`` membership when it has
no encoder). Anything not listed raises
:class:`UnsupportedBackboneError` naming the supported families, so no regularizer silently misses
layers it does not recognise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from torch import nn


class UnsupportedBackboneError(RuntimeError):
    """The backbone lacks what a regularizer needs; the message names what is supported."""


@dataclass(frozen=True)
class Layout:
    """One family's structure below its root (module paths relative to the root)."""

    stacks: tuple[tuple[str, str | None], ...]  # (path suffix of a block ModuleList, stack; None = by is_decoder)
    self_attention: str  # path of the self-attention module inside a block
    cross_attention: str | None  # path of the cross-attention module inside a block (decoders of enc-dec)
    # What a block returns after its hidden states, by the name of the forward argument that carries the
    # same thing in (T5 blocks hand the shared position biases on): a skipped block (LayerDrop) returns
    # ``(hidden_states, *those arguments)``; empty = the block returns the hidden states alone.
    block_returns: tuple[str, ...] = ()


_BERT = Layout(stacks=(("encoder.layer", None),), self_attention="attention.self",
               cross_attention="crossattention.self")
_BART = Layout(stacks=(("encoder.layers", "encoder"), ("decoder.layers", "decoder")), self_attention="self_attn",
               cross_attention="encoder_attn")
_T5 = Layout(stacks=(("encoder.block", "encoder"), ("decoder.block", "decoder")),
             self_attention="layer.0.SelfAttention", cross_attention="layer.1.EncDecAttention",
             block_returns=("position_bias", "encoder_decoder_position_bias"))
_GPT2 = Layout(stacks=(("h", "decoder"),), self_attention="attn", cross_attention="crossattention")
_LLAMA = Layout(stacks=(("layers", "decoder"),), self_attention="self_attn", cross_attention=None)
# config.model_type -> layout
LAYOUTS: dict[str, Layout] = {"bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "bart": _BART, "mbart": _BART,
                              "t5": _T5, "mt5": _T5, "gpt2": _GPT2, "llama": _LLAMA, "qwen2": _LLAMA}
# Decoder-only families (backbone.kind=decoder): one causal stack, no encoder.
DECODER_ONLY = ("gpt2", "llama", "qwen2")
SUPPORTED_FAMILIES = ("BERT, RoBERTa, BART, T5, EncoderDecoderModel (BERT2BERT) of those, and the decoder-only "
                      "GPT-2, Llama and Qwen2")
# Parameter-name parts of biases and normalization weights: no weight decay (BERT recipe, Devlin et al. 2019;
# GPT-2 names its norms ln_1, ln_2, ln_f; Llama/Qwen2 input_layernorm, post_attention_layernorm, norm).
NO_DECAY_KEYS = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight", "norm.weight",
                 "ln_1.weight", "ln_2.weight", "ln_f.weight")
# Children of the task model that are sequence-classification heads (BERT, RoBERTa, BART/T5, decoder-only).
HEAD_NAMES = ("classifier", "classification_head", "score")


@dataclass(frozen=True)
class Block:
    """One transformer block: ``stack`` is ``encoder`` or ``decoder``, ``index`` its position in the stack.

    ``skippable``: the block can be left out of a forward pass (LayerDrop) without changing what the
    others compute; False for a block that computes state the later blocks reuse (T5's first block
    owns the relative position bias every layer of its stack adds). ``returns``: see
    :attr:`Layout.block_returns`."""

    path: str
    module: nn.Module
    stack: str
    index: int
    skippable: bool = True
    returns: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttentionLayer:
    """The module that calls the attention function; ``kind`` is ``self`` or ``cross``."""

    path: str
    module: nn.Module
    stack: str
    kind: str
    block: int


@dataclass(frozen=True)
class Head:
    """A sequence-classification head (the trained copy under PEFT) and its final linear layer, whose
    input is the penultimate representation."""

    path: str
    module: nn.Module
    final_path: str
    final: nn.Linear


def _family_roots(model: nn.Module) -> Iterator[tuple[str, nn.Module, Layout]]:
    from transformers import PreTrainedModel

    roots: list[str] = []
    for path, module in model.named_modules():
        if not isinstance(module, PreTrainedModel) or any(path.startswith(f"{r}.") or r == "" for r in roots):
            continue
        layout = LAYOUTS.get(getattr(module.config, "model_type", None))
        if layout is not None:
            roots.append(path)
            yield path, module, layout


def family_model_types(model: nn.Module) -> list[str]:
    """The ``model_type`` of every family root (``["bert", "bert"]`` for a BERT2BERT)."""
    return [root.config.model_type for _, root, _ in _family_roots(model)]


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix else path


def blocks(model: nn.Module) -> list[Block]:
    """Every transformer block of every stack, in module order; raises for unknown families."""
    found: list[Block] = []
    for root_path, root, layout in _family_roots(model):
        for rel, module in root.named_modules():
            for suffix, stack in layout.stacks:
                if isinstance(module, nn.ModuleList) and (rel == suffix or rel.endswith(f".{suffix}")):
                    name = stack or ("decoder" if getattr(root.config, "is_decoder", False) else "encoder")
                    found += [Block(_join(root_path, f"{rel}.{i}"), block, name, i, _skippable(block, layout),
                                    layout.block_returns) for i, block in enumerate(module)]
    if not found:
        raise UnsupportedBackboneError(
            f"{type(model).__name__}: no transformer blocks of a known family (model types "
            f"{sorted(_model_types(model))}); supported: {SUPPORTED_FAMILIES}")
    return found


def _skippable(block: nn.Module, layout: Layout) -> bool:
    attention = _submodule(block, layout.self_attention)
    return not getattr(attention, "has_relative_attention_bias", False)


def _model_types(model: nn.Module) -> set[str]:
    return {str(getattr(getattr(m, "config", None), "model_type", None)) for m in model.modules()
            if hasattr(m, "config")}


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """Every attention layer (the modules that call the attention function), with stack and kind."""
    layouts = {root_path: layout for root_path, _, layout in _family_roots(model)}
    layers = []
    for block in blocks(model):
        layout = next(layouts[r] for r in sorted(layouts, key=len, reverse=True)
                      if r == "" or block.path.startswith(f"{r}."))
        for kind, rel in (("self", layout.self_attention), ("cross", layout.cross_attention)):
            module = _submodule(block.module, rel) if rel else None
            if module is not None:
                layers.append(AttentionLayer(f"{block.path}.{rel}", module, block.stack, kind, block.index))
    return layers


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def _task_model(model: nn.Module) -> tuple[str, nn.Module]:
    """The outermost Hugging Face model (below PEFT's wrappers) and its path."""
    from transformers import PreTrainedModel

    return next(((p, m) for p, m in model.named_modules() if isinstance(m, PreTrainedModel)), ("", model))


def task_model(model: nn.Module) -> nn.Module:
    """The outermost Hugging Face model: ``model`` itself, or the one a PEFT wrapper holds."""
    return _task_model(model)[1]


def classification_head(model: nn.Module) -> Head:
    """The sequence-classification head and its final linear layer (``classifier`` itself for BERT,
    ``out_proj`` of the two-layer RoBERTa/BART/T5 heads). Under PEFT, the trained copy
    (``modules_to_save``) of the head. Raises when the model has none."""
    root_path, root = _task_model(model)
    for name in HEAD_NAMES:
        head = getattr(root, name, None)
        if not isinstance(head, nn.Module):
            continue
        path = _join(root_path, name)
        saved = getattr(head, "modules_to_save", None)  # PEFT ModulesToSaveWrapper: the copy that trains
        if isinstance(saved, nn.ModuleDict) and getattr(head, "active_adapter", None) in saved:
            path, head = f"{path}.modules_to_save.{head.active_adapter}", saved[head.active_adapter]
        if isinstance(head, nn.Linear):
            return Head(path, head, path, head)
        out_proj = getattr(head, "out_proj", None)
        if isinstance(out_proj, nn.Linear):
            return Head(path, head, f"{path}.out_proj", out_proj)
    raise UnsupportedBackboneError(
        f"{type(root).__name__} has no sequence-classification head with a final linear layer "
        f"({', '.join(HEAD_NAMES)}; two-layer heads: <head>.out_proj)")


def head_name(model: nn.Module) -> str | None:
    """The attribute name of the classification head on the task model, or None (seq2seq LMs)."""
    _, root = _task_model(model)
    return next((name for name in HEAD_NAMES if isinstance(getattr(root, name, None), nn.Module)), None)


def block_classes(model: nn.Module) -> set[str]:
    """Class names of the transformer blocks (FSDP wrap units). Families not in :data:`LAYOUTS` fall
    back to the classes the model declares in ``_no_split_modules`` (accelerate's device-map unit)."""
    try:
        return {type(block.module).__name__ for block in blocks(model)}
    except UnsupportedBackboneError:
        declared: set[str] = set()
        for module in model.modules():
            declared.update(getattr(module, "_no_split_modules", None) or ())
        return declared


def is_decayed(name: str) -> bool:
    """Whether weight decay applies to the parameter ``name``: not to biases and norms (:data:`NO_DECAY_KEYS`)."""
    return not any(key in name for key in NO_DECAY_KEYS)


def decay_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups of the trainable parameters: ``weight_decay`` on weights, none on biases
    and norms (:func:`is_decayed`)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if is_decayed(name) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
    return groups
