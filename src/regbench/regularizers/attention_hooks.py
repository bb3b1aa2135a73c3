"""Route a backbone's attention layers through regularizers (TLM, DropHead), model-agnostically.

transformers >= 5 computes attention as ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation](module,
query, key, value, attention_mask, **kwargs)``, once per attention layer, and builds the 4D masks with
``ALL_MASK_ATTENTION_FUNCTIONS[config._attn_implementation]``. :func:`install_attention_hook` registers
``regbench_<base>`` in both interfaces: the attention function wraps the backbone's own ``sdpa`` or
``eager`` function, the mask function is that base's own (so padding/causal masks are unchanged).

Every config object that any module of the model holds is switched, not only the sub-models' own:
``EncoderDecoderModel.__init__`` replaces ``encoder.config``/``decoder.config`` after their layers
were built, so a warm-started BERT2BERT's attention layers keep stale config objects that
``set_attn_implementation`` never reaches (they would silently keep calling plain sdpa).

The attention layers and their roles (stack, self vs cross) come from
:mod:`regbench.models.structure`; each layer keeps the chain of hooks installed on it (``HOOKS_ATTR``,
in the order the regularizers were listed: the first listed sees the call first and hands its
(possibly changed) mask and inputs to the next, the last one calls the backbone's function). A module
the structure does not know that still calls the hooked function raises instead of passing through.

Supported: every backbone whose attention goes through the AttentionInterface with base ``sdpa`` or
``eager`` and whose family :mod:`regbench.models.structure` knows (tested: BERT, RoBERTa, BART, T5,
``EncoderDecoderModel`` BERT2BERT). Anything else raises :class:`UnsupportedBackboneError`.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, Callable, Protocol

from regbench.models.structure import SUPPORTED_FAMILIES, AttentionLayer, UnsupportedBackboneError, attention_layers
from regbench.regularizers.base import Regularizer

HOOKS_ATTR = "_regbench_attention_hooks"
LAYER_ATTR = "_regbench_attention_layer"
CROSS_ATTR = "_regbench_is_cross_attention"
HOOKED_PREFIX = "regbench_"
WRAPPABLE_BASES = ("sdpa", "eager")

_EAGER_BY_CLASS: dict[type, Callable[..., Any]] = {}


class AttentionHook(Protocol):
    """What a regularizer implements to see every attention call."""

    def attention(self, module: Any, base: Callable[..., Any], additive_mask: bool, query: Any, key: Any,
                  value: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Return ``(attn_output (B, L, H, D), attn_weights)``; ``base`` is the next function of the chain
        (in the end the backbone's own) and ``additive_mask`` says whether it expects float additive
        masks (eager) or accepts boolean ones (sdpa)."""


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
                f" 'sdpa' (supported backbones: {SUPPORTED_FAMILIES})")
        _EAGER_BY_CLASS[cls] = eager
    return _EAGER_BY_CLASS[cls]


def _hooked_attention(base_name: str, module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                      **kwargs: Any) -> tuple[Any, Any]:
    hooks = module.__dict__.get(HOOKS_ATTR)
    if hooks is None:
        raise UnsupportedBackboneError(
            f"{type(module).__name__} runs attention '{HOOKED_PREFIX}{base_name}' but is not an attention layer"
            f" that regbench.models.structure knows (supported: {SUPPORTED_FAMILIES})")
    call = _base_function(module, base_name)
    additive = base_name == "eager"
    for hook in reversed(hooks):  # the first listed regularizer is the outermost
        call = partial(_call_hook, hook, call, additive)
    return call(module, query, key, value, attention_mask, **kwargs)


def _call_hook(hook: AttentionHook, base: Callable[..., Any], additive: bool, module: Any, query: Any, key: Any,
               value: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, Any]:
    return hook.attention(module, base, additive, query, key, value, attention_mask, **kwargs)


def held_configs(model: Any) -> list[Any]:
    """Every distinct ``PretrainedConfig`` held by a module of ``model`` (stale ones included), and their
    sub-configs."""
    from transformers import PretrainedConfig

    from regbench.regularizers.backbone_config import iter_configs

    seen: dict[int, Any] = {}
    for module in model.modules():
        config = module.__dict__.get("config")
        if isinstance(config, PretrainedConfig):
            for cfg in iter_configs(config):
                seen.setdefault(id(cfg), cfg)
    return list(seen.values())


def install_attention_hook(model: Any, hook: AttentionHook, layers: list[AttentionLayer] | None = None) -> str:
    """Make the attention layers of ``model`` (default: all) call ``hook.attention``; return the
    implementation name. A second call (another attention regularizer) extends each layer's chain.

    Raises :class:`UnsupportedBackboneError` when the backbone's attention does not go through the
    AttentionInterface with an sdpa or eager base, or its family is unknown.
    """
    from transformers import AttentionInterface, PreTrainedModel
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

    all_layers = attention_layers(model)
    configs = held_configs(model)
    bases = {str(c._attn_implementation).removeprefix(HOOKED_PREFIX) for c in configs}
    if len(bases) != 1 or next(iter(bases)) not in WRAPPABLE_BASES:
        raise UnsupportedBackboneError(
            f"{type(model).__name__}: attention implementation {sorted(bases)} cannot be hooked;"
            f" supported: one of {list(WRAPPABLE_BASES)} on {SUPPORTED_FAMILIES}")
    base_name = bases.pop()
    name = f"{HOOKED_PREFIX}{base_name}"
    AttentionInterface.register(name, partial(_hooked_attention, base_name))
    AttentionMaskInterface.register(name, sdpa_mask if base_name == "sdpa" else eager_mask)
    for layer in all_layers:
        # Plain attributes (not submodules): hooks are not nn.Modules and hold no parameters.
        layer.module.__dict__.setdefault(HOOKS_ATTR, ())
        layer.module.__dict__[LAYER_ATTR] = layer
        layer.module.__dict__[CROSS_ATTR] = layer.kind == "cross"
    for layer in all_layers if layers is None else layers:
        layer.module.__dict__[HOOKS_ATTR] += (hook,)
    submodels = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
    submodels[0].set_attn_implementation(name)  # transformers' own checks and dispatch to sub-models
    refused = sorted({type(m).__name__ for m in submodels if m.config._attn_implementation != name})
    if refused:
        raise UnsupportedBackboneError(
            f"{', '.join(refused)} does not route attention through transformers' AttentionInterface;"
            f" supported: {SUPPORTED_FAMILIES}")
    for config in configs:  # stale copies too; the internal field, as set_attn_implementation does
        config._attn_implementation_internal = name
    return name


def uninstall_attention_hooks(model: Any) -> str | None:
    """Switch every config object of ``model`` (stale ones included) from ``regbench_<base>`` back to
    ``<base>`` and drop the hooks from the layers; returns ``"regbench_sdpa -> sdpa"`` or None."""
    configs = [c for c in held_configs(model) if str(c._attn_implementation).startswith(HOOKED_PREFIX)]
    if not configs:
        return None
    hooked = str(configs[0]._attn_implementation)
    base = hooked.removeprefix(HOOKED_PREFIX)
    for config in configs:
        config._attn_implementation_internal = base
    for module in model.modules():
        for attr in (HOOKS_ATTR, LAYER_ATTR, CROSS_ATTR):
            module.__dict__.pop(attr, None)
    return f"{hooked} -> {base}"


class AttentionRegularizer(Regularizer):
    """Base of regularizers that act inside attention (TLM, DropHead).

    ``apply`` installs the hook on the layers :meth:`claims`; subclasses implement
    :meth:`AttentionHook.attention` and call :meth:`count_training_call` in it. After the first training
    forward pass every claimed layer must have gone through the hook, else the run fails naming the
    layers that were missed (a backbone that accepts the switch but bypasses it on some layers).
    """

    _claimed: dict[int, str]
    _seen: set[int]
    _checked = False

    def claims(self, layer: AttentionLayer) -> bool:
        """Whether the method acts on ``layer`` (default: every attention layer)."""
        return True

    def apply(self, model: Any) -> Any:
        claimed = [layer for layer in attention_layers(model) if self.claims(layer)]
        self._claimed = {id(layer.module): layer.path for layer in claimed}
        self._seen, self._ran = set(), set()
        # Which claimed layers ran at all: a layer whose block was left out of the pass on purpose
        # (LayerDrop) is checked in a later pass, not reported as missed. Removed once all are checked.
        self._ran_hooks = [layer.module.register_forward_pre_hook(self._record_run) for layer in claimed]
        install_attention_hook(model, self, claimed)
        return model

    def _record_run(self, module: Any, args: Any) -> None:
        if module.training and not self._checked:
            self.__dict__.setdefault("_ran", set()).add(id(module))

    def count_training_call(self, module: Any) -> bool:
        """Record a call made in training mode; returns ``module.training``."""
        if module.training and not self._checked:
            self.__dict__.setdefault("_seen", set()).add(id(module))
        return module.training

    def wrap_forward(self, forward: Callable[[dict], Any]) -> Callable[[dict], Any]:
        """Check, after each training pass until every claimed layer has run, that every claimed layer
        that ran went through the hook."""

        def checked(batch: dict) -> Any:
            outputs = forward(batch)
            if not self._checked:
                self.check_claimed_layers()
            return outputs

        return checked

    def check_claimed_layers(self) -> None:
        """Raise naming every claimed layer that ran in training without going through the hook."""
        claimed, seen = self.__dict__.get("_claimed", {}), self.__dict__.get("_seen", set())
        ran = self.__dict__.get("_ran", set(claimed)) | seen
        missed = [path for key, path in claimed.items() if key in ran and key not in seen]
        if missed and len(missed) == len(claimed):
            raise UnsupportedBackboneError(
                f"{self.name}: no attention layer it claims went through its hook in a training step (missed:"
                f" {', '.join(missed) or 'none claimed'}; supported: {SUPPORTED_FAMILIES})")
        if not claimed:
            raise UnsupportedBackboneError(f"{self.name}: claims no attention layer (supported: {SUPPORTED_FAMILIES})")
        if missed:
            raise UnsupportedBackboneError(
                f"{self.name}: {len(missed)} of {len(claimed)} attention layers it claims did not go through its"
                f" hook in a training step: {', '.join(missed)} (supported: {SUPPORTED_FAMILIES})")
        if all(key in ran for key in claimed):
            self._checked = True
            for handle in self.__dict__.pop("_ran_hooks", []):
                handle.remove()
