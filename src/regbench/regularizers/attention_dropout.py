"""``regularizer=attention_dropout``: dropout on post-softmax attention probabilities.

Element-wise dropout of the attention probabilities (Vaswani et al. 2017, Sec. 5.4; BERT's
``attention_probs_dropout_prob``), set through the backbone's config so its own attention function
applies it: BERT/RoBERTa ``attention_probs_dropout_prob``, BART ``attention_dropout``; T5 has no
separate key (``dropout_rate`` drives both), so its attention modules' rate is set after the model is
built. Parameter: ``p`` in [0, 1) (formerly ``rate``). Changes: config (T5: attention modules).
Eval: no dropout.
"""

from __future__ import annotations

from typing import Any

from regbench.regularizers.backbone_config import set_attention_dropout, set_attention_dropout_modules
from regbench.regularizers.base import Regularizer, check_range


class AttentionDropout(Regularizer):
    """Attention-probability dropout rate set in the backbone config."""

    renamed_parameters = {"rate": "p"}

    def __init__(self, p: float = 0.1) -> None:
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)

    def backbone_settings(self) -> dict[str, float]:
        return {"attention_dropout": self.p}

    def configure_backbone_config(self, config: Any) -> None:
        set_attention_dropout(config, self.p)

    def apply(self, model: Any) -> Any:
        set_attention_dropout_modules(model, self.p)
        return model
