"""Route a backbone's attention layers through a regularizer (TLM, DropHead), model-agnostically.

transformers >= 5 computes attention as ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation](module,
query, key, value, attention_mask, **kwargs)``, once per attention layer, and builds the 4D masks with
``ALL_MASK_ATTENTION_FUNCTIONS[config._attn_implementation]``. :func:`install_attention_hook` registers
``regbench_<base>`` in both interfaces: the attention function wraps the backbone's own ``sdpa`` or
``eager`` function, the mask function is that base's own (so padding/causal masks are unchanged), and
``model.set_attn_implementation`` switches every sub-model (encoder and decoder of composites) to it.

The per-call work is delegated to the hook object stored on every module (``HOOK_ATTR``), with the
layer's role (``CROSS_ATTR``: True for encoder-decoder cross-attention) decided once, structurally:
a module is cross-attention if it or an ancestor is named like a cross-attention block
(``crossattention`` in BERT, ``encoder_attn`` in BART, ``EncDecAttention`` in T5), has
``is_cross_attention=True`` or a class named ``*CrossAttention*``.

Supported: every backbone whose attention goes through the AttentionInterface with base ``sdpa`` or
``eager`` (tested: BERT, RoBERTa, BART, T5, ``EncoderDecoderModel`` BERT2BERT). Anything else raises
:class:`UnsupportedBackboneError` instead of silently training without the regularizer.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, Callable, Protocol

from regbench.regularizers.backbone_config import UnsupportedBackboneError
from regbench.regularizers.base import Regularizer

HOOK_ATTR = "_regbench_attention_hook"
CROSS_ATTR = "_regbench_is_cross_attention"
HOOKED_PREFIX = "regbench_"
WRAPPABLE_BASES = ("sdpa", "eager")
SUPPORTED_BACKBONES = "BERT, RoBERTa, BART, T5 and EncoderDecoderModel (BERT2BERT)"
CROSS_ATTENTION_NAMES = frozenset({"crossattention", "encoder_attn", "EncDecAttention", "cross_attn",
                                   "cross_attention"})

_EAGER_BY_CLASS: dict[type, Callable[..., Any]] = {}


class AttentionHook(Protocol):
    """What a regularizer implements to see every attention call."""

    def attention(self, module: Any, base: Callable[..., Any], additive_mask: bool, query: Any, key: Any,
                  value: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Return ``(attn_output (B, L, H, D), attn_weights)``; ``base`` is the backbone's own function
        and ``additive_mask`` says whether it expects float additive masks (eager) or accepts boolean
        ones (sdpa)."""


def _base_function(module: Any, base_name: str) -> Callable[..., Any]:
    """The attention function the backbone would have used: global sdpa, or its module's eager one."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if base_name != "eager":
        return ALL_ATTENTION_FUNCTIONS[base_name]
    cls = type(module)
    if cls not in _EAGER_BY_CLASS:
        eager = getattr(sys.modules.get(cls.__module__), "eager_attention_forward", None)
        if eager is None:
            raise UnsupportedBackboneError(
                f"{cls.__name__} has no eager_attention_forward in {cls.__module__}; use attn_implementation"
                f" 'sdpa' (supported backbones: {SUPPORTED_BACKBONES})")
        _EAGER_BY_CLASS[cls] = eager
    return _EAGER_BY_CLASS[cls]


def _hooked_attention(base_name: str, module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                      **kwargs: Any) -> tuple[Any, Any]:
    hook = getattr(module, HOOK_ATTR, None)
    if hook is None:
        raise UnsupportedBackboneError(
            f"{type(module).__name__} runs attention '{HOOKED_PREFIX}{base_name}' but was not prepared by"
            " install_attention_hook (module created after the regularizer was applied?)")
    base = _base_function(module, base_name)
    return hook.attention(module, base, base_name == "eager", query, key, value, attention_mask, **kwargs)


def _cross_attention_roles(model: Any) -> dict[str, bool]:
    """Map every module path to True when it is (inside) an encoder-decoder cross-attention block."""
    roles: dict[str, bool] = {}
    for path, module in model.named_modules():
        parent = roles.get(path.rsplit(".", 1)[0], False) if path else False
        own = (path.rsplit(".", 1)[-1] in CROSS_ATTENTION_NAMES
               or getattr(module, "is_cross_attention", False) is True
               or "CrossAttention" in type(module).__name__)
        roles[path] = parent or own
    return roles


def install_attention_hook(model: Any, hook: AttentionHook) -> str:
    """Make every attention layer of ``model`` call ``hook.attention``; return the implementation name.

    Raises :class:`UnsupportedBackboneError` when the backbone's attention does not go through the
    AttentionInterface with an sdpa or eager base, or when a sub-model refuses the switch.
    """
    from transformers import AttentionInterface, PreTrainedModel
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

    submodels = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
    bases = {m.config._attn_implementation for m in submodels}
    if not submodels or len(bases) != 1 or next(iter(bases)) not in WRAPPABLE_BASES:
        raise UnsupportedBackboneError(
            f"{type(model).__name__}: attention implementation {sorted(map(str, bases))} cannot be hooked;"
            f" supported: one of {list(WRAPPABLE_BASES)} on {SUPPORTED_BACKBONES}")
    base_name = bases.pop()
    name = f"{HOOKED_PREFIX}{base_name}"
    AttentionInterface.register(name, partial(_hooked_attention, base_name))
    AttentionMaskInterface.register(name, sdpa_mask if base_name == "sdpa" else eager_mask)

    roles = _cross_attention_roles(model)
    for path, module in model.named_modules():
        # Plain attributes (not submodules): the hook is not an nn.Module and holds no parameters.
        module.__dict__[HOOK_ATTR] = hook
        module.__dict__[CROSS_ATTR] = roles[path]
    model.set_attn_implementation(name)
    refused = sorted({type(m).__name__ for m in submodels if m.config._attn_implementation != name})
    if refused:
        raise UnsupportedBackboneError(
            f"{', '.join(refused)} does not route attention through transformers' AttentionInterface;"
            f" supported: {SUPPORTED_BACKBONES}")
    return name


class AttentionRegularizer(Regularizer):
    """Base of regularizers that act inside attention (TLM, DropHead).

    ``apply`` installs the hook; subclasses implement :meth:`AttentionHook.attention` and call
    :meth:`count_training_call` in it. The first training step checks that the hook really ran, so a
    backbone that accepts the switch but never calls it fails instead of training unregularized.
    """

    _training_calls = 0
    _checked = False

    def apply(self, model: Any) -> Any:
        install_attention_hook(model, self)
        return model

    def count_training_call(self, module: Any) -> bool:
        """Count a call made in training mode; returns ``module.training``."""
        if module.training:
            self._training_calls += 1
        return module.training

    def training_loss(self, model: Any, batch: dict[str, Any]) -> Any:
        loss = super().training_loss(model, batch)
        if not self._checked:
            if self._training_calls == 0:
                raise UnsupportedBackboneError(
                    f"{self.name}: no attention layer of {type(model).__name__} went through the hook in a"
                    f" training step (supported: {SUPPORTED_BACKBONES})")
            self._checked = True
        return loss
