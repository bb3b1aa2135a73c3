"""Dropout knobs of Hugging Face backbone configs, shared by the dropout-family regularizers.

Each family names its rates differently (methods.md, "Attention dropout and hidden dropout"):

=============  =====================  ==============================  =====================
family         hidden dropout         attention-probability dropout   classifier dropout
=============  =====================  ==============================  =====================
BERT/RoBERTa   hidden_dropout_prob    attention_probs_dropout_prob    classifier_dropout
BART/DistilB.  dropout                attention_dropout               classifier_dropout /
                                                                      seq_classif_dropout
T5             dropout_rate           (dropout_rate, shared)          classifier_dropout
GPT-2          resid_pdrop, embd_pdrop  attn_pdrop                    none (``score``: plain Linear)
Llama, Qwen2   none                   attention_dropout               none (``score``: plain Linear)
=============  =====================  ==============================  =====================

Llama and Qwen2 have no hidden dropout at all, so hidden-dropout methods refuse them; the decoder-only
sequence-classification heads (``score``) apply no dropout, so setting their classifier dropout to 0
is already true and any other rate is refused.

T5's single ``dropout_rate`` also drives attention-probability dropout: every ``T5Attention`` keeps
a float copy in ``.dropout`` that its forward passes to the attention function, so the attention
rate of T5 models is set on those modules after the model is built.
"""

from __future__ import annotations

from typing import Any, Iterator

from regbench.models.structure import UnsupportedBackboneError

HIDDEN_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout", "dropout_rate", "resid_pdrop", "embd_pdrop")
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
CLASSIFIER_DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout")
# Families whose attention-probability dropout is their hidden dropout rate (see module docstring).
SHARED_DROPOUT_FAMILIES = ("t5", "mt5", "umt5", "longt5")
# Families that name their rates otherwise: every key of the tuple is set (GPT-2's hidden dropout is
# the residual and the embedding dropout, as BERT's hidden_dropout_prob covers both).
FAMILY_DROPOUT_KEYS = {"gpt2": {"hidden": ("resid_pdrop", "embd_pdrop"), "attention": ("attn_pdrop",)},
                       "llama": {"hidden": (), "attention": ("attention_dropout",)},
                       "qwen2": {"hidden": (), "attention": ("attention_dropout",)}}
# Sequence-classification heads without any dropout (a plain ``score`` Linear on the last non-pad token).
NO_HEAD_DROPOUT_FAMILIES = ("gpt2", "llama", "qwen2")
__all__ = ["UnsupportedBackboneError", "iter_configs", "set_attention_dropout", "set_attention_dropout_modules",
           "set_classifier_dropout", "set_hidden_dropout", "shares_attention_dropout"]


def iter_configs(config: Any) -> Iterator[Any]:
    """Yield ``config`` and, depth first, every nested sub-config (encoder/decoder of composites)."""
    yield config
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "to_dict"):
            yield from iter_configs(sub)


def shares_attention_dropout(config: Any) -> bool:
    """True for T5-style configs whose one rate drives hidden and attention dropout."""
    return getattr(config, "model_type", None) in SHARED_DROPOUT_FAMILIES


def _set_first_key(config: Any, keys: tuple[str, ...], rate: float, kind: str = "") -> str | None:
    family = FAMILY_DROPOUT_KEYS.get(getattr(config, "model_type", None), {})
    if kind in family:
        for key in family[kind]:
            setattr(config, key, rate)
        return ", ".join(family[kind]) or None
    for key in keys:
        if hasattr(config, key):
            setattr(config, key, rate)
            return key
    return None


def set_hidden_dropout(config: Any, rate: float) -> list[str]:
    """Set the hidden (embeddings, attention-output, FFN-output) dropout of every (sub-)config."""
    changed = [key for cfg in iter_configs(config)
               if (key := _set_first_key(cfg, HIDDEN_DROPOUT_KEYS, rate, "hidden"))]
    if not changed:
        raise UnsupportedBackboneError(
            f"{type(config).__name__} has no hidden-dropout key (Llama and Qwen2 apply no hidden dropout at all);"
            f" supported keys: {list(HIDDEN_DROPOUT_KEYS)}, GPT-2's resid_pdrop + embd_pdrop")
    return changed


def set_attention_dropout(config: Any, rate: float) -> list[str]:
    """Set the attention-probability dropout key of every (sub-)config that has one.

    T5-style configs have none (their rate is set on the modules by :func:`set_attention_dropout_modules`).
    """
    changed, shared = [], False
    for cfg in iter_configs(config):
        if shares_attention_dropout(cfg):
            shared = True
        elif key := _set_first_key(cfg, ATTENTION_DROPOUT_KEYS, rate, "attention"):
            changed.append(key)
    if not changed and not shared:
        raise UnsupportedBackboneError(
            f"{type(config).__name__} has no attention-dropout key; supported keys: {list(ATTENTION_DROPOUT_KEYS)}"
            f" or a T5-family model ({', '.join(SHARED_DROPOUT_FAMILIES)})")
    return changed


def set_attention_dropout_modules(model: Any, rate: float) -> int:
    """Set the float attention-dropout rate kept by the attention modules of T5-family sub-models.

    Returns how many modules were changed (0 for families configured through their config).
    """
    from transformers import PreTrainedModel

    changed = 0
    for sub in model.modules():
        if isinstance(sub, PreTrainedModel) and shares_attention_dropout(sub.config):
            for module in sub.modules():
                if type(module).__name__.endswith("Attention") and isinstance(getattr(module, "dropout", None), float):
                    module.dropout = float(rate)
                    changed += 1
    return changed


def set_classifier_dropout(config: Any, rate: float) -> str:
    """Set the dropout applied to the pooled representation entering the classification head."""
    if getattr(config, "model_type", None) in NO_HEAD_DROPOUT_FAMILIES:
        if rate == 0.0:
            return "none (the head applies no dropout)"
        raise UnsupportedBackboneError(
            f"{type(config).__name__}: the sequence-classification head of {config.model_type} models applies no "
            f"dropout (a plain Linear on the last non-pad token), so a classifier dropout of {rate} cannot act")
    key = _set_first_key(config, CLASSIFIER_DROPOUT_KEYS, rate)
    if key is None:
        raise UnsupportedBackboneError(
            f"{type(config).__name__} has no classifier-dropout key; supported keys: {list(CLASSIFIER_DROPOUT_KEYS)}"
            " (sequence-classification backbones: BERT, RoBERTa, BART, T5, DistilBERT)")
    return key
