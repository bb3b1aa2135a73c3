"""``regularizer=wdecay``: L2 toward a target, the Mixout paper's ``wdecay(u, λ)``.

Wiese et al. 2017 (toward the pretrained weights) and L2-SP (Li, Grandvalet & Davoine, ICML 2018,
Sec. 3.2, ``Ω(w) = α/2·||w − w⁰||²``); notation of Lee, Cho & Kang (Mixout, ICLR 2020, arXiv
1909.11299, Sec. 2 and Table 1): ``wdecay(u, λ)`` pulls every weight toward ``u`` with strength λ,
``u = 0`` (ordinary weight decay) or ``u = w_pre`` (the weights at the start of fine-tuning).

Form. ``form: decoupled`` (default): ``w ← w − lr·λ·(w − u)`` with each parameter group's ``lr``,
after backward and before the optimizer step (``before_optimizer_step``): AdamW's decoupled weight
decay (Loshchilov & Hutter 2019) with the target moved from 0 to ``u``, so ``target: zero`` is
exactly ``torch.optim.AdamW(weight_decay=λ)`` (tested). ``form: penalty``: ``λ/2 · Σ ||w − u||²``
added once to each step's loss (``penalty``; gradient ``λ (w − u)``, which then goes through Adam's
moment scaling: L2-SP's form). Why decoupled by default: the reference repository
(bloodwass/mixout, read at its newest snapshot) holds only the Mixout operator
(``mixout/mixout.py``, ``mixlinear.py``) and two examples that train with plain ``Adam`` and no
weight decay; the scripts behind Table 1 are not released. The paper names BERT's own fine-tuning
regularization, AdamW's decoupled weight decay 0.01, ``wdecay(0, 0.01)`` (Table 1's first row), so
the operator its ``wdecay(u, λ)`` rows vary is that one with another target; the decoupled form keeps
the baseline row (``optim.weight_decay=0.01``) and the ``wdecay(w_pre, λ)`` rows the same operator.
The paper writes ``wdecay`` as the L2 penalty of the objective; under Adam the two differ, hence the
option.

Which weights (the BERT recipe the Mixout experiments build on, ``no_decay = [bias, LayerNorm.weight]``):
every trainable weight except biases and normalization weights
(:func:`regbench.models.structure.is_decayed`). The new classification head has no pretrained
value: its target is 0 for both targets (the paper's Table 1 gives the new output layer
``wdecay(0)``). ``scope: head`` restricts the method to the new head (Table 1's output-layer
regularization next to ``mixout(head=exclude)``); ``scope: all`` is everything above.

Combination: the optimizer's own ``optim.weight_decay`` still applies; the Mixout table sets one or
the other, so use ``optim.weight_decay=0`` with this method unless both are wanted. It acts on the
full weights, so it is refused next to a PEFT wrapper (LoRA adapters: use ``optim.weight_decay``).
Eval: unchanged (train-only). The targets (``w_pre``) are captured in ``apply``, before a checkpoint
is restored, so a resumed run keeps pulling toward the pretrained weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from regbench.models.structure import UnsupportedBackboneError, classification_head, head_name, is_decayed
from regbench.regularizers.base import Regularizer, RegularizerConfigError, check_choice, check_range

TARGETS = ("zero", "pretrained")
FORMS = ("penalty", "decoupled")
SCOPES = ("all", "head")


def head_parameters(model: nn.Module) -> set[int]:
    """Ids of the new classification head's parameters (empty for models without one, e.g. seq2seq LMs)."""
    if head_name(model) is None:
        return set()
    return {id(p) for p in classification_head(model).module.parameters()}


def decayed_weights(model: nn.Module, scope: str = "all") -> list[tuple[str, nn.Parameter, bool]]:
    """``(name, parameter, is_head)`` of every trainable weight wdecay pulls (no biases, no norms). A family
    whose head is not known has no head here (``scope="all"``); ``scope="head"`` then raises."""
    try:
        head = head_parameters(model)
    except UnsupportedBackboneError:
        if scope == "head":
            raise
        head = set()
    chosen = []
    for name, param in model.named_parameters():
        if not param.requires_grad or not is_decayed(name):
            continue
        is_head = id(param) in head
        if scope == "all" or is_head:
            chosen.append((name, param, is_head))
    return chosen


class _L2Toward(torch.autograd.Function):
    """``λ/2 · Σ ||w − u||²`` with its gradient ``λ (w − u)`` written directly (no autograd graph of the
    subtraction and square: one temporary per weight in each direction instead of several)."""

    @staticmethod
    def forward(ctx, strength: float, targets: list, *params: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.strength, ctx.targets = strength, targets
        ctx.save_for_backward(*params)
        diffs = [p if t is None else p - t for p, t in zip(params, targets)]
        norms = torch._foreach_norm(diffs)
        return 0.5 * strength * torch.stack(norms).float().pow(2).sum()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        scale = ctx.strength * grad_output
        grads = [(p if t is None else p - t) * scale.to(p.dtype) for p, t in zip(ctx.saved_tensors, ctx.targets)]
        return (None, None, *grads)


class WDecay(Regularizer):
    """L2 toward 0 or the pretrained weights (penalty or decoupled); the new head toward 0."""

    trains_full_model = True  # acts on the full weights: not next to a PEFT-frozen backbone

    def __init__(self, target: str = "pretrained", strength: float = 0.01, form: str = "decoupled",
                 scope: str = "all") -> None:
        self.target = check_choice("target", target, TARGETS)
        self.strength = check_range("strength", strength, 0.0, 100.0)
        self.form = check_choice("form", form, FORMS)
        self.scope = check_choice("scope", scope, SCOPES)
        self._weights: list[tuple[nn.Parameter, torch.Tensor | None]] = []

    def needs(self) -> frozenset[str]:
        drop = {"before_optimizer_step"} if self.form == "penalty" else {"penalty"}
        return super().needs() - drop

    def apply(self, model: nn.Module) -> nn.Module:
        """Capture the parameters and their targets (``None`` = 0) from the model as built."""
        chosen = decayed_weights(model, self.scope)
        if not chosen:
            raise RegularizerConfigError(f"regularizer.wdecay scope={self.scope!r} selects no trainable weight in "
                                         f"{type(model).__name__}")
        self._weights = [(p, p.detach().clone() if self.target == "pretrained" and not is_head else None)
                         for _, p, is_head in chosen]
        return model

    def _targets(self) -> list[tuple[nn.Parameter, torch.Tensor | None]]:
        """The captured pairs, targets moved (once) to where the trainer put the parameters."""
        if any(t is not None and t.device != p.device for p, t in self._weights):
            self._weights = [(p, None if t is None else t.to(p.device)) for p, t in self._weights]
        return self._weights

    def penalty(self, model: Any) -> torch.Tensor | None:
        """``λ/2 · Σ ||w − u||²`` (the paper's ``wdecay(u, λ)``)."""
        if self.form != "penalty" or self.strength == 0.0:
            return None
        pairs = self._targets()
        return _L2Toward.apply(self.strength, [t for _, t in pairs], *(p for p, _ in pairs))

    def before_optimizer_step(self, model: Any, optimizer: Any) -> None:
        """Decoupled form: ``w ← w − lr·λ·(w − u) = (1 − lr·λ)·w + lr·λ·u`` with the ``lr`` of each
        parameter's group, in place and without temporaries (AdamW's own ``w ← (1 − lr·λ)·w`` for u = 0)."""
        if self.form != "decoupled" or self.strength == 0.0:
            return
        lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        by_lr: dict[float, tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = {}
        for param, target in self._targets():
            lr = lr_of.get(id(param))
            if lr is None:
                continue
            params, pulled, targets = by_lr.setdefault(lr, ([], [], []))
            params.append(param)
            if target is not None:
                pulled.append(param)
                targets.append(target)
        with torch.no_grad():
            for lr, (params, pulled, targets) in by_lr.items():
                torch._foreach_mul_(params, 1.0 - lr * self.strength)
                if pulled:
                    torch._foreach_add_(pulled, targets, alpha=lr * self.strength)

    def describe(self) -> dict[str, Any]:  # noqa: D102
        return {"name": self.name, "target": self.target, "strength": self.strength, "form": self.form,
                "scope": self.scope}
