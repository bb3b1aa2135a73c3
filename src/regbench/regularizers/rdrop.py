"""``regularizer=rdrop``: R-Drop (Liang, Wu et al., NeurIPS 2021, arXiv 2106.14448, Sec. 2.1, Eq. 3).

Each training batch goes through the model twice; dropout (and every other member's stochastic
patch: TLM/DropHead masks, Mixout masks) is drawn independently per pass, because this method owns
the training loss (``training_loss(forward, batch)``) and calls the fully wrapped pass twice. The
loss of a batch, with ``L_i`` the model's own task loss of pass i (cross-entropy / MSE / token CE):

- classification: ``L1 + L2`` (``reduction: sum``) or ``(L1 + L2)/2`` (``mean``)
  ``+ α · ½ (KL(P1‖P2) + KL(P2‖P1))``, the KL of the two output distributions per example, averaged
  over the batch (the paper's Eq. 3 per example);
- regression (one output): task losses as above ``+ α · MSE(y1, y2)`` (the released code's
  regression term: the two passes' predictions pulled together by their squared difference);
- seq2seq: task losses as above ``+ α · ½ (KL + KL)`` of the next-token distributions, per target
  token over the non-padding positions (labels ``!= -100``), averaged over those tokens (fairseq's
  token-level normalisation in the released translation/summarisation criteria).

Conventions read in dropreg/R-Drop: the BERT code (``huggingface_transformer_src``,
``BertForSequenceClassification.bert_kl``) sums the two passes' batch-mean CE and adds
``0.5 · (KL + KL)/2`` with the KL summed over the batch (not averaged; here it is averaged, as in the
paper's per-example loss and the fairseq code's division by the number of sentences), and for
regression adds ``1.0 · MSE(y1, y2)`` with α unused (here α weights it). The RoBERTa code
(``fairseq_src/examples/roberta/roberta_rdrop_src``) uses ``--reg-alpha`` (0.7 in the paper's
setting); ``reduction`` exposes the sum/mean difference of the task losses (paper-numbers.md).
For regression the RoBERTa criterion applies MSE to the first pass only; here both passes get it.

Dropout must be on: with all dropout at 0 the two passes are identical and the method only doubles
the cost. Members that set the backbone's hidden and attention dropout to 0 (mixout's recipe,
``dropout.p=0`` with ``attention_dropout.p=0``) are refused with it when the stack is built, before
any weights load (``requires_dropout``); a backbone whose own config has no dropout is caught at the
first training step, which checks that the two passes differ and raises otherwise. Eval: one ordinary pass
(train-only). Cost: two forward and backward passes per step (about 2x).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from regbench.regularizers.base import Regularizer, RegularizerConfigError, check_choice, check_range

REDUCTIONS = ("sum", "mean")


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """``½ (KL(P1‖P2) + KL(P2‖P1))`` per row of the last dimension (computed in float32)."""
    lp1, lp2 = F.log_softmax(logits1.float(), dim=-1), F.log_softmax(logits2.float(), dim=-1)
    kl12 = (lp1.exp() * (lp1 - lp2)).sum(-1)
    kl21 = (lp2.exp() * (lp2 - lp1)).sum(-1)
    return 0.5 * (kl12 + kl21)


def consistency(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """R-Drop's term between two passes: symmetric KL per example (classification), per non-padding
    target token (seq2seq: ``logits [B, T, V]`` with ``labels [B, T]``, -100 = padding), or the MSE of
    the two predictions (regression: one output)."""
    if logits1.dim() == 3:
        kl = symmetric_kl(logits1, logits2)
        keep = (labels != -100) if labels is not None else torch.ones_like(kl, dtype=torch.bool)
        return (kl * keep).sum() / keep.sum().clamp(min=1)
    if logits1.shape[-1] == 1:
        return F.mse_loss(logits1.float().view(-1), logits2.float().view(-1))
    return symmetric_kl(logits1, logits2).mean()


class RDrop(Regularizer):
    """Two passes with independent dropout; task loss on both + α × their consistency term."""

    requires_dropout = True

    def __init__(self, alpha: float = 0.5, reduction: str = "sum") -> None:
        self.alpha = check_range("alpha", alpha, 0.0, 1000.0)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self._checked = False

    def training_loss(self, forward: Callable[[dict], Any], batch: dict[str, Any]) -> Any:
        """``reduce(L1, L2) + α · consistency(P1, P2)`` over two fully regularized passes."""
        first, second = forward(batch), forward(batch)
        if not self._checked:
            self._check_passes_differ(first.logits, second.logits)
        task = first.loss + second.loss
        if self.reduction == "mean":
            task = task / 2
        return task + self.alpha * consistency(first.logits, second.logits, batch.get("labels"))

    def _check_passes_differ(self, logits1: torch.Tensor, logits2: torch.Tensor) -> None:
        if torch.equal(logits1, logits2):
            raise RegularizerConfigError(
                "regularizer rdrop: the two training passes gave identical outputs, so R-Drop has nothing to act on: "
                "it needs dropout on (the backbone's hidden/attention dropout > 0: check regularizer.dropout.p, "
                "regularizer.attention_dropout.p, backbone dropout settings, and members that set every dropout to 0)")
        self._checked = True

    def describe(self) -> dict[str, Any]:  # noqa: D102
        return {"name": self.name, "alpha": self.alpha, "reduction": self.reduction}
