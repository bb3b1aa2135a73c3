"""``regularizer=mixout``: Mixout (Lee, Cho & Kang, ICLR 2020, arXiv 1909.11299, Sec. 3).

Every selected ``nn.Linear`` (and GPT-2 ``Conv1D``, its transposed twin) mixes its weight ``w`` with a frozen target ``u`` (its weight at
the start of fine-tuning; for the fresh classification head, its initial weight). Per forward
pass in training, one Bernoulli decision per **input neuron** (weight column), shared by all its
outgoing weights and the whole mini-batch:

    xi_j ~ Bernoulli(1 - p),   w_mix[:, j] = u[:, j] + xi_j * (w[:, j] - u[:, j]) / (1 - p)

so ``E[w_mix] = w``. The bias is not mixed. Following the reference recipe every dropout is set
to 0 (backbone config before the model is built: every ``*dropout*`` and GPT-2 ``*_pdrop`` key, and
every ``nn.Dropout`` module). A tied output layer (GPT-2's ``lm_head``, the input embeddings) is
mixed where it acts as a Linear; the embedding lookup keeps the plain weight.

Parameters (``conf/regularizer/mixout.yaml``):
- ``p`` in [0, 1): probability of swapping a column back to its target.
- ``include`` / ``exclude``: lists of regular expressions (``re.search``) over module names;
  a Linear is mixed if it matches some ``include`` pattern and no ``exclude`` pattern.
- ``disable_dropout``: set every dropout to 0 (the reference recipe; default true).
- ``faithful``: reproduce the reference's backward, which scales the gradient by ``xi`` only
  and omits the true derivative's ``1/(1-p)``.
- ``head``: the target of the new output layer (the freshly initialised classification head, every
  Linear of it; paper Table 3). ``w0``: ``mixout(w_0, p)`` toward its own random initialisation (the
  paper's best row, and the reference recipe); ``exclude``: the head is not mixed. Table 1's output
  layer (not mixed; dropout + ``wdecay(0)``) is ``head: exclude`` composed with the methods that do
  that: ``regularizer=[mixout,very_large_dropout,wdecay] regularizer.mixout.head=exclude
  regularizer.very_large_dropout.p=0.1 regularizer.wdecay.target=zero regularizer.wdecay.scope=head``
  (Table 3's ``dropout(0.7)`` row: ``exclude`` + ``very_large_dropout.p=0.7``). A model without a new
  head (seq2seq LMs) refuses ``exclude``, which could not act there.

What it changes: config (dropout) and modules (a ``torch.nn.utils.parametrize``
parametrization on each selected ``weight``: the optimizer keeps training the original
parameter, exposed as ``<module>.parametrizations.weight.original``; the target is one frozen
buffer of the weight's dtype/device, saved with the state dict so checkpoints resume exactly).
No weight is copied per step except the mixed weight itself, which ``F.linear`` needs.
Eval: the parametrization is the identity, so the network uses plain ``w``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from regbench.models.structure import classification_head, head_name
from regbench.regularizers.base import Regularizer, RegularizerConfigError, check_choice, check_range


log = logging.getLogger(__name__)


class _MixoutFunction(torch.autograd.Function):
    """``u + xi * (w - u) / (1-p)`` with a backward that scales by ``grad_scale`` (saved, tiny)."""

    @staticmethod
    def forward(ctx, weight, target, value_scale, grad_scale):  # noqa: D102
        ctx.save_for_backward(grad_scale)
        return torch.addcmul(target, weight - target, value_scale)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        (grad_scale,) = ctx.saved_tensors
        return grad_output * grad_scale, None, None, None


def mixout_weight(weight: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, p: float,
                  faithful: bool = False) -> torch.Tensor:
    """Mix ``weight`` with ``target`` given the input-neuron mask ``keep`` (0/1; shape ``[1, in]`` for a
    Linear's ``[out, in]`` weight, ``[in, 1]`` for a Conv1D's ``[in, out]``).

    Mixout (arXiv 1909.11299, Sec. 3): ``u + keep * (w - u) / (1 - p)``. The true derivative
    w.r.t. ``w`` is ``keep / (1 - p)``; ``faithful=True`` uses the reference code's ``keep``.
    """
    value_scale = keep / (1.0 - p)
    return _MixoutFunction.apply(weight, target, value_scale, keep if faithful else value_scale)


class MixoutParametrization(nn.Module):
    """Parametrization ``w -> w_mix`` in training, identity in eval; holds the frozen target.

    A new column mask is drawn on every evaluation of the parametrized weight (once per
    forward of the Linear; :meth:`Mixout.wrap_forward` caches it for the whole forward pass).
    """

    input_dim = 1  # the weight dimension of the input neurons: nn.Linear's weight is [out, in]

    def __init__(self, target: torch.Tensor, p: float, faithful: bool) -> None:
        super().__init__()
        self.register_buffer("target", target.detach().clone())
        self.p = p
        self.faithful = faithful
        self.last_mask: torch.Tensor | None = None  # for inspection in tests

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.training:
            return weight
        shape = [1, 1]
        shape[self.input_dim] = weight.shape[self.input_dim]  # one decision per input neuron
        keep = torch.empty(shape, dtype=weight.dtype, device=weight.device)
        keep.bernoulli_(1.0 - self.p)
        self.last_mask = keep
        return mixout_weight(weight, self.target, keep, self.p, self.faithful)

    def extra_repr(self) -> str:  # noqa: D102
        return f"p={self.p}, faithful={self.faithful}"


class Conv1DMixoutParametrization(MixoutParametrization):
    """Mixout of a GPT-2 ``Conv1D`` (``y = x W + b``, weight ``[in, out]``): the input neurons are the
    weight's rows, so one decision per row (the transposed layout of ``nn.Linear``)."""

    input_dim = 0


def _as_patterns(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    patterns = [str(v) for v in value]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise RegularizerConfigError(f"regularizer.{key}: bad regular expression {pattern!r}: {err}") from None
    return patterns


def disable_dropout_in_config(config: Any) -> list[str]:
    """Set every dropout rate of a Hugging Face config (and its sub-configs) to 0; return the keys.

    Before the model is built, so attention modules that keep a float copy of the rate (T5,
    BART) are built with 0 as well.
    """
    changed = []
    for key, value in config.to_dict().items():
        if ("dropout" in key or key.endswith("pdrop")) and not isinstance(value, bool) and (value is None or isinstance(value, (int, float))):
            setattr(config, key, 0.0)
            changed.append(key)
    for key in getattr(config, "sub_configs", None) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "to_dict"):
            changed += [f"{key}.{k}" for k in disable_dropout_in_config(sub)]
    return changed


HEAD_TARGETS = ("w0", "exclude")


class Mixout(Regularizer):
    """Mixout on every selected ``nn.Linear`` of backbone and head (arXiv 1909.11299)."""

    trains_full_model = True  # mixes the pretrained weights themselves: not with a PEFT-frozen backbone

    def __init__(self, p: float = 0.9, include: Sequence[str] | None = (".*",),
                 exclude: Sequence[str] | None = (), disable_dropout: bool = True,
                 faithful: bool = False, head: str = "w0") -> None:
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        self.include = _as_patterns("include", include)
        self.exclude = _as_patterns("exclude", exclude)
        self.disable_dropout = bool(disable_dropout)
        self.faithful = bool(faithful)
        self.head = check_choice("head", head, HEAD_TARGETS)

    def backbone_settings(self) -> dict[str, float]:
        if not self.disable_dropout:
            return {}
        return {"hidden_dropout": 0.0, "attention_dropout": 0.0, "classifier_dropout": 0.0}

    def configure_backbone_config(self, config: Any) -> None:
        """Reference recipe: all dropout rates 0 before the model is built."""
        if self.disable_dropout:
            disable_dropout_in_config(config)

    def selects(self, name: str) -> bool:
        """Whether the Linear called ``name`` gets mixout (include/exclude patterns)."""
        return (any(re.search(p, name) for p in self.include)
                and not any(re.search(p, name) for p in self.exclude))

    def apply(self, model: nn.Module) -> nn.Module:
        """Parametrize the selected Linear (and GPT-2 Conv1D, a Linear with a transposed weight)
        weights; targets = their current values."""
        from transformers.pytorch_utils import Conv1D

        if self.disable_dropout:
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0
        head = self._head_modules(model)
        layers = [m for n, m in model.named_modules()
                  if isinstance(m, (nn.Linear, Conv1D)) and n and self.selects(n) and id(m) not in head]
        if not layers:
            raise RegularizerConfigError(
                f"regularizer.include={self.include} / exclude={self.exclude} select no nn.Linear (or GPT-2 Conv1D)")
        for module in layers:
            if not parametrize.is_parametrized(module, "weight"):
                kind = Conv1DMixoutParametrization if isinstance(module, Conv1D) else MixoutParametrization
                parametrize.register_parametrization(module, "weight", kind(module.weight, self.p, self.faithful))
        log.info("mixout p=%s on %d nn.Linear / Conv1D layers", self.p, len(layers))
        return model

    def _head_modules(self, model: nn.Module) -> set[int]:
        """Ids of the new head's modules that ``head: exclude`` leaves unmixed (empty for ``w0``)."""
        if self.head == "w0":
            return set()
        if head_name(model) is None:
            raise RegularizerConfigError(
                f"regularizer.mixout.head={self.head!r}: {type(model).__name__} has no new classification head "
                f"(nothing to exclude); use head=w0")
        return {id(m) for m in classification_head(model).module.modules()}

    def wrap_forward(self, forward: Callable[[dict], Any]) -> Callable[[dict], Any]:
        """One mask per Linear per forward pass, even if a model reads ``.weight`` several times."""

        def one_mask_per_pass(batch: dict) -> Any:
            with parametrize.cached():
                return forward(batch)

        return one_mask_per_pass

    def describe(self) -> dict[str, Any]:  # noqa: D102
        return {"name": self.name, "p": self.p, "include": self.include, "exclude": self.exclude,
                "disable_dropout": self.disable_dropout, "faithful": self.faithful, "head": self.head}
