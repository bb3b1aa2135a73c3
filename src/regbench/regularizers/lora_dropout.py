"""``regularizer=lora_dropout``: LoRA Dropout (Lin et al. 2024, arXiv 2404.09610, Sec. 3).

LoRA (through PEFT, see :mod:`regbench.regularizers.lora`) whose adapter factors are masked
instead of the adapter input: with ``Delta W = B A`` (A: r x in, B: out x r), draw
``m_A ~ Bernoulli(1-p)`` over A's input columns and ``m_B ~ Bernoulli(1-p)`` over B's output
rows, giving ``Delta W' = diag(m_B) B A diag(m_A)`` (no rescaling; the rank r is never dropped).
Masks are resampled at every forward pass in training and shared by the mini-batch. PEFT's own
``lora_dropout`` is forced to 0.

Implementation on top of PEFT's ``lora.Linear``: ``x -> lora_B(lora_A(drop(x)))``, so
``diag(m_A)`` is applied in PEFT's dropout slot (``x * m_A``, a module without state, so
adapters save/load unchanged) and ``diag(m_B)`` by a forward hook on ``lora_B`` (output
``* m_B``). No weight is copied.

Test-time ensemble (Sec. 3.3): :meth:`LoRADropout.predict_logits` averages N forward passes with
independent masks; ``ensemble_passes=1`` (default) is one deterministic pass without masks.
``ensemble_average=probs`` returns ``log(mean softmax)`` (argmax = the averaged prediction, and
cross-entropy on it is the ensemble's NLL); ``logits`` returns the mean logits. Regression
heads (one output) always average outputs.

Parameters (``conf/regularizer/lora_dropout.yaml``): ``r``, ``alpha``, ``target_modules``,
``modules_to_save`` as for ``lora``; ``p`` in [0, 1); ``ensemble_passes`` >= 1;
``ensemble_average`` in {probs, logits}.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from regbench.regularizers.base import RegularizerConfigError, check_choice, check_range, register
from regbench.regularizers.lora import LoRA


class _MaskSwitch:
    """Shared state: masks are drawn in training mode, or in eval while ``forced`` (ensemble)."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.forced = False


def _draw_mask(size: int, like: torch.Tensor, p: float) -> torch.Tensor:
    return torch.empty(size, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p)


class InputColumnMask(nn.Module):
    """``x * m_A``: ``diag(m_A)`` on A's input columns, placed in PEFT's ``lora_dropout`` slot."""

    def __init__(self, switch: _MaskSwitch) -> None:
        super().__init__()
        self.switch = switch
        self.last_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not (self.training or self.switch.forced) or self.switch.p == 0.0:
            self.last_mask = None
            return x
        self.last_mask = _draw_mask(x.shape[-1], x, self.switch.p)
        return x * self.last_mask


class OutputRowMask:
    """Forward hook on ``lora_B``: output ``* m_B`` = ``diag(m_B)`` on B's output rows."""

    def __init__(self, switch: _MaskSwitch) -> None:
        self.switch = switch
        self.last_mask: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not (module.training or self.switch.forced) or self.switch.p == 0.0:
            self.last_mask = None
            return None
        self.last_mask = _draw_mask(output.shape[-1], output, self.switch.p)
        return output * self.last_mask


def factor_masks(model: nn.Module) -> list[tuple[nn.Module, InputColumnMask, OutputRowMask]]:
    """``(lora layer, m_A module, m_B hook)`` for every masked adapter of ``model``."""
    return list(getattr(model, "_lora_factor_masks", []))


@register("lora_dropout")
class LoRADropout(LoRA):
    """LoRA with Bernoulli masks on A's input columns and B's output rows + test-time ensemble."""

    def __init__(self, r: int = 8, alpha: float = 16.0, p: float = 0.1,
                 target_modules: Sequence[str] | None = None,
                 modules_to_save: Sequence[str] | None = None,
                 ensemble_passes: int = 1, ensemble_average: str = "probs") -> None:
        super().__init__(r=r, alpha=alpha, dropout=0.0, target_modules=target_modules,
                         modules_to_save=modules_to_save)
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        if isinstance(ensemble_passes, bool) or not float(ensemble_passes).is_integer():
            raise RegularizerConfigError(
                f"regularizer.ensemble_passes={ensemble_passes!r} must be an integer in [1, inf)")
        self.ensemble_passes = int(check_range("ensemble_passes", ensemble_passes, 1, float("inf")))
        self.ensemble_average = check_choice("ensemble_average", ensemble_average, ("probs", "logits"))
        self._switch = _MaskSwitch(self.p)

    def apply(self, model: nn.Module) -> nn.Module:
        """PEFT LoRA (dropout 0), then install ``m_A`` / ``m_B`` on every adapter."""
        from peft.tuners.lora import LoraLayer

        peft_model = super().apply(model)
        masks = []
        for module in peft_model.modules():
            if not isinstance(module, LoraLayer):
                continue
            for adapter in module.lora_A:
                if not isinstance(module.lora_dropout[adapter], nn.Identity):
                    raise RegularizerConfigError("lora_dropout: PEFT lora_dropout must be 0")
                mask_a = InputColumnMask(self._switch)
                module.lora_dropout[adapter] = mask_a
                mask_b = OutputRowMask(self._switch)
                module.lora_B[adapter].register_forward_hook(mask_b)
                masks.append((module, mask_a, mask_b))
        if not masks:
            raise RegularizerConfigError("lora_dropout: no LoRA layer found to mask")
        # A plain attribute (not a submodule), so the state dict is unchanged.
        object.__setattr__(peft_model, "_lora_factor_masks", masks)
        return peft_model

    def predict_logits(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Test-time ensemble over ``ensemble_passes`` independently masked forward passes."""
        if self.ensemble_passes == 1 or self.p == 0.0:
            return model(**batch).logits
        self._switch.forced = True
        try:
            outputs = [model(**batch).logits for _ in range(self.ensemble_passes)]
        finally:
            self._switch.forced = False
        return average_passes(outputs, self.ensemble_average)

    def describe(self) -> dict[str, Any]:  # noqa: D102
        info = super().describe()
        info.pop("dropout", None)
        info.update({"p": self.p, "ensemble_passes": self.ensemble_passes,
                     "ensemble_average": self.ensemble_average})
        return info


def average_passes(outputs: list[torch.Tensor], mode: str) -> torch.Tensor:
    """Average N passes: ``log(mean softmax)`` (``probs``) or mean logits; regression: mean."""
    stacked = torch.stack(outputs)
    if mode == "logits" or stacked.shape[-1] == 1:
        return stacked.mean(0)
    # log(mean_i softmax_i) computed stably as logsumexp_i(log_softmax_i) - log N
    log_probs = torch.log_softmax(stacked.float(), dim=-1)
    return (torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(outputs))))).to(stacked.dtype)
