"""``regularizer=dropout``: hidden dropout at a chosen rate (Srivastava et al., JMLR 2014; BERT's recipe).

Sets the backbone's hidden dropout (embeddings, attention output, FFN output) through its config so
its own code applies it: BERT/RoBERTa ``hidden_dropout_prob``, BART ``dropout``, T5 ``dropout_rate``;
every sub-config of composites (EncoderDecoderModel). T5's rate also drives its attention dropout, so
the attention modules get their original rate back after the model is built (only hidden dropout
changes). Parameter: ``p`` in [0, 1) (formerly ``rate``). Changes: config. Eval: no dropout (the
unregularized model).
"""

from __future__ import annotations

from typing import Any

from regbench.regularizers.backbone_config import (iter_configs, set_attention_dropout_modules, set_hidden_dropout,
                                                   shares_attention_dropout)
from regbench.regularizers.base import Regularizer, check_range


class HiddenDropout(Regularizer):
    """Hidden dropout rate set in the backbone config."""

    renamed_parameters = {"rate": "p"}

    def __init__(self, p: float = 0.1) -> None:
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        self._t5_attention_rate: float | None = None

    def backbone_settings(self) -> dict[str, float]:
        return {"hidden_dropout": self.p}

    def configure_backbone_config(self, config: Any) -> None:
        shared = [cfg for cfg in iter_configs(config) if shares_attention_dropout(cfg)]
        if shared:
            self._t5_attention_rate = float(shared[0].dropout_rate)
        set_hidden_dropout(config, self.p)

    def apply(self, model: Any) -> Any:
        if self._t5_attention_rate is not None:
            set_attention_dropout_modules(model, self._t5_attention_rate)
        return model
