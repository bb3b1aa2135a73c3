"""``regularizer=drophead``: DropHead (Zhou et al., Findings of EMNLP 2020, arXiv 2004.13342).

Sec. 3.1: during training, per example and per attention layer, draw ``z[b, h] ~ Bernoulli(1 - p)``,
redraw examples whose heads are all dropped, and multiply the per-head context (the attention
output before the output projection) by ``z[b, h] * H / sum_h z[b, h]`` (not by ``1 / (1 - p)``).
Applied to every multi-head attention layer (encoder, decoder self- and cross-attention; the layers
come from :mod:`regbench.models.structure`) through :mod:`regbench.regularizers.attention_hooks`, i.e.
to the ``(B, L, H, D)`` output of the backbone's own attention function (after TLM's masked attention
when both are selected); the first training step fails naming any layer that bypassed the hook.

Sec. 3.2 (scheduled DropHead): ``schedule: constant`` uses ``p`` throughout; ``schedule: v_shaped``
lowers the rate linearly from ``p_start`` to 0 until ``turning_point * total_steps``, then raises it
linearly to ``p_end`` at the last step.

Parameters: ``p``, ``p_start``, ``p_end`` in [0, 1); ``schedule`` in {constant, v_shaped};
``turning_point`` in [0, 1] (fraction of total steps). Changes: attention outputs. Eval: identity.
"""

from __future__ import annotations

from typing import Any

import torch

from regbench.regularizers.attention_hooks import AttentionRegularizer
from regbench.regularizers.base import check_choice, check_range

SCHEDULES = ("constant", "v_shaped")


def drophead_scale(batch: int, heads: int, p: float, device: Any = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-example head multipliers (B, H): ``z * H / sum(z)``, z ~ Bernoulli(1 - p), never all zero."""
    kept = torch.rand(batch, heads, device=device) >= p
    empty = ~kept.any(dim=1)
    while bool(empty.any()):  # redraw the examples that lost every head (Sec. 3.1)
        kept[empty] = torch.rand(int(empty.sum()), heads, device=device) >= p
        empty = ~kept.any(dim=1)
    kept = kept.to(dtype)
    return kept * (heads / kept.sum(dim=1, keepdim=True))


def v_shaped_rate(step: int, total_steps: int, p_start: float, p_end: float, turning_point: float) -> float:
    """Scheduled DropHead rate: ``p_start`` -> 0 at ``turning_point * total``, then 0 -> ``p_end``."""
    total = max(int(total_steps), 1)
    step = min(max(int(step), 0), total)
    turn = turning_point * total
    if step < turn:
        return p_start * (1.0 - step / turn)
    return p_end * ((step - turn) / (total - turn) if total > turn else 1.0)


class DropHead(AttentionRegularizer):
    """Drop whole attention heads per example, rescaling the kept ones by H / kept (train only)."""

    def __init__(self, p: float = 0.1, schedule: str = "constant", p_start: float = 0.1, p_end: float = 0.1,
                 turning_point: float = 0.5) -> None:
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        self.p_start = check_range("p_start", p_start, 0.0, 1.0, high_open=True)
        self.p_end = check_range("p_end", p_end, 0.0, 1.0, high_open=True)
        self.turning_point = check_range("turning_point", turning_point, 0.0, 1.0)
        self._rate = self.p if self.schedule == "constant" else self.p_start

    @property
    def rate(self) -> float:
        """The drop rate used by the next training forward."""
        return self._rate

    def rate_at(self, step: int, total_steps: int) -> float:
        """The scheduled rate at optimizer step ``step`` of ``total_steps``."""
        if self.schedule == "constant":
            return self.p
        return v_shaped_rate(step, total_steps, self.p_start, self.p_end, self.turning_point)

    def on_train_step(self, step: int, total_steps: int) -> None:
        self._rate = self.rate_at(step, total_steps)

    def attention(self, module: Any, base: Any, additive_mask: bool, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: Any, **kwargs: Any) -> Any:
        """Attention-interface hook: rescale the per-head context of each example."""
        output, weights = base(module, query, key, value, attention_mask, **kwargs)
        if not self.count_training_call(module) or self._rate == 0.0:
            return output, weights
        batch, heads = query.shape[0], query.shape[1]
        if output.dim() != 4 or output.shape[2] != heads:
            raise RuntimeError(f"DropHead expects a (B, L, H, D) attention output, got {tuple(output.shape)}")
        scale = drophead_scale(batch, heads, self._rate, output.device, output.dtype)
        return output * scale[:, None, :, None], weights
