"""``regularizer=tlm``: Token-Level Masking (Wu et al., EMNLP 2023, arXiv 2310.18738, Sec. 3).

Per attention layer, per training step and per example (one mask shared by all heads):

1. ``keep[b, j] ~ Bernoulli(keep_rate)`` over real tokens.
2. Kept rows see only kept columns: ``M[b, i, j] = keep[b, i] * keep[b, j]``.
3. Every masked row (real token not kept) draws its type 50/50 (``mode=both``) or uses one type:
   siblings-masking attends only to itself (``M[b, i, :] = e_i``); self-masking attends to every
   other real token but not itself (``M[b, i, :] = m[b, :] * (1 - e_i)``).
4. ``M`` is AND-ed with the model's own mask (padding; causal in decoders) and resampled per layer.

Applied to encoder self-attention and decoder self-attention, never to cross-attention (layer roles
from :mod:`regbench.models.structure`), through :mod:`regbench.regularizers.attention_hooks` (one
vectorized mask construction per layer); the first training step fails naming any of those layers
that did not go through the hook. A row
left with nothing to attend to (self-masking of the only token a row may see: a one-token sequence,
or the first position under a causal mask) keeps the model's own mask row, so no NaN can appear.

``faithful: true`` reproduces the reference code (Young1993/tlm): padding rows are drawn as masked
rows too and self-masked rows attend to padding (``1 - e_i`` over all positions); the causal mask of
decoders is still applied.

Parameters: ``keep_rate`` in (0, 1] (reference ``masking_rate``; 0.9 default, 0.95 in its RTE
recipe), ``mode`` in {both, siblings, self}, ``faithful`` bool, ``attention_dropout`` in [0, 1) or
null to keep the backbone's (the reference trains TLM with attention dropout 0, the default here).
Changes: attention masks (and the attention-dropout config). Eval: the unregularized model, exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from regbench.models.structure import AttentionLayer
from regbench.regularizers.attention_hooks import AttentionRegularizer
from regbench.regularizers.backbone_config import (UnsupportedBackboneError, set_attention_dropout,
                                                   set_attention_dropout_modules)
from regbench.regularizers.base import RegularizerConfigError, check_choice, check_range

MODES = ("both", "siblings", "self")


def sample_token_masking(batch: int, length: int, keep_rate: float, mode: str,
                         device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw TLM's per-token decisions: ``keep`` (B, L) ~ Bernoulli(keep_rate) and, for the masked
    rows, ``siblings`` (B, L): True for siblings-masking, False for self-masking (Sec. 3)."""
    keep = torch.rand(batch, length, device=device) < keep_rate
    if mode == "both":
        siblings = torch.rand(batch, length, device=device) < 0.5
    else:
        siblings = torch.full((batch, length), mode == "siblings", dtype=torch.bool, device=device)
    return keep, siblings


def token_masking_pattern(keep: torch.Tensor, siblings: torch.Tensor) -> torch.Tensor:
    """The TLM pattern ``M`` (B, L, L) before the model's mask: kept rows see kept columns; masked
    rows see only themselves (siblings) or every position but themselves (self)."""
    eye = torch.eye(keep.shape[-1], dtype=torch.bool, device=keep.device)
    masked_rows = torch.where(siblings[:, :, None], eye, ~eye)
    return torch.where(keep[:, :, None], keep[:, None, :], masked_rows)


def _allowed(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean view (True = may attend) of a boolean or additive float 4D mask."""
    if attention_mask is None or attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def tlm_attention_mask(attention_mask: torch.Tensor | None, batch: int, length: int, keep_rate: float,
                       mode: str, *, causal: bool, faithful: bool = False, additive: bool = False,
                       dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """Combine a fresh TLM pattern with a layer's own 4D mask (``None``, boolean or additive float).

    Returns a mask of the kind the attention function expects: boolean, or additive float when the
    input mask was float or ``additive`` is set (eager attention). Shape (B, 1, L, L), shared by heads.
    """
    keep, siblings = sample_token_masking(batch, length, keep_rate, mode, device)
    allowed = _allowed(attention_mask)
    if faithful and allowed is not None:
        # Reference semantics: padding is never kept, every non-kept row (padding included) is masked.
        keep &= allowed.any(dim=-2).expand(batch, 1, length)[:, 0]
    pattern = token_masking_pattern(keep, siblings)[:, None]
    if causal:
        pattern &= torch.ones(length, length, dtype=torch.bool, device=device).tril()
    own = allowed if not faithful else None  # faithful ignores padding: only the causal part is kept
    combined = pattern if own is None else pattern & own
    empty = ~combined.any(dim=-1, keepdim=True)
    if own is None and causal:
        own = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    fallback = own if own is not None else torch.eye(length, dtype=torch.bool, device=device)[None, None]
    combined = torch.where(empty, fallback, combined)
    if attention_mask is not None and attention_mask.dtype != torch.bool and not faithful:
        # Keep the additive values (biases) of the model's own float mask on the allowed entries.
        return torch.where(combined, attention_mask, torch.finfo(attention_mask.dtype).min)
    if additive or (attention_mask is not None and attention_mask.dtype != torch.bool):
        float_dtype = attention_mask.dtype if attention_mask is not None and attention_mask.dtype != torch.bool \
            else dtype
        return torch.where(combined, torch.zeros((), dtype=float_dtype, device=device),
                           torch.finfo(float_dtype).min)
    return combined


class TokenLevelMasking(AttentionRegularizer):
    """Token-Level Masking on encoder/decoder self-attention (train only)."""

    def __init__(self, keep_rate: float = 0.9, mode: str = "both", faithful: bool = False,
                 attention_dropout: float | None = 0.0) -> None:
        self.keep_rate = check_range("keep_rate", keep_rate, 0.0, 1.0, low_open=True)
        self.mode = check_choice("mode", mode, MODES)
        if not isinstance(faithful, bool):
            raise RegularizerConfigError(f"regularizer.faithful={faithful!r} must be true or false")
        self.faithful = faithful
        self.attention_dropout = (None if attention_dropout is None
                                  else check_range("attention_dropout", attention_dropout, 0.0, 1.0, high_open=True))

    def claims(self, layer: AttentionLayer) -> bool:
        """Encoder and decoder self-attention; never cross-attention."""
        return layer.kind == "self"

    def backbone_settings(self) -> dict[str, float]:
        return {} if self.attention_dropout is None else {"attention_dropout": self.attention_dropout}

    def configure_backbone_config(self, config: Any) -> None:
        if self.attention_dropout is not None:
            set_attention_dropout(config, self.attention_dropout)

    def apply(self, model: Any) -> Any:
        if self.attention_dropout is not None:
            set_attention_dropout_modules(model, self.attention_dropout)
        return super().apply(model)

    def attention(self, module: Any, base: Any, additive_mask: bool, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs: Any) -> Any:
        """Attention-interface hook (self-attention layers): a fresh TLM mask in training."""
        if not self.count_training_call(module) or self.keep_rate == 1.0:
            return base(module, query, key, value, attention_mask, **kwargs)
        batch, length = query.shape[0], query.shape[-2]
        if key.shape[-2] != length:
            raise UnsupportedBackboneError(
                f"TLM: self-attention {type(module).__name__} got {length} queries but {key.shape[-2]} keys in"
                " training (an undetected cross-attention or a KV cache); cannot build a token mask")
        causal = bool(kwargs.get("is_causal", getattr(module, "is_causal", False)))
        mask = tlm_attention_mask(attention_mask, batch, length, self.keep_rate, self.mode, causal=causal,
                                  faithful=self.faithful, additive=additive_mask, dtype=query.dtype,
                                  device=query.device)
        return base(module, query, key, value, mask, **kwargs)
