"""``regularizer=very_large_dropout``: very large dropout on the penultimate representation.

Zhang & Bottou, "Fine-tuning with very large dropout" (arXiv 2403.00946, Sec. 3): dropout at a very
high rate (0.9) on the features entering the final linear classifier while fine-tuning, no extra
dropout inside the backbone, and optionally a larger learning rate for the head (reference option
``lastlrfac``, 1 by default). Text analogue (methods.md): dropout ``p`` on the representation entering
the head's final linear layer (BERT: the pooled output entering ``classifier``; RoBERTa/BART/T5
two-layer heads: the ``dense`` + tanh features entering ``out_proj``; where the head is, also under
PEFT, comes from :mod:`regbench.models.structure`). The head's own dropout (``classifier_dropout``) is
set to 0: the two-layer heads apply it twice (before ``dense`` and before ``out_proj``), so raising
it would also drop 90% of the pooled token's features before ``dense``, which the method does not do.
The rate is applied by a forward pre-hook on the final linear layer, identity in eval mode.

Parameters: ``p`` in [0, 1) (default 0.9; formerly ``rate``), ``head_lr_factor`` in (0, 1000]
(default 1: off). Changes: config, the head's final linear input, optimizer groups. Eval: the
unregularized model.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from regbench.models.structure import classification_head
from regbench.regularizers.backbone_config import set_classifier_dropout
from regbench.regularizers.base import Regularizer, check_range


class VeryLargeDropout(Regularizer):
    """Dropout ``p`` on the pooled representation entering the classifier; optional head LR factor."""

    requires = frozenset({"classification_head"})
    renamed_parameters = {"rate": "p"}

    def __init__(self, p: float = 0.9, head_lr_factor: float = 1.0) -> None:
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        self.head_lr_factor = check_range("head_lr_factor", head_lr_factor, 0.0, 1000.0, low_open=True)

    def needs(self) -> frozenset[str]:
        return super().needs() - ({"param_groups"} if self.head_lr_factor == 1.0 else set())

    def backbone_settings(self) -> dict[str, float]:
        return {"classifier_dropout": 0.0}

    def configure_backbone_config(self, config: Any) -> None:
        set_classifier_dropout(config, 0.0)

    def apply(self, model: Any) -> Any:
        classification_head(model).final.register_forward_pre_hook(self._drop_features)
        return model

    def _drop_features(self, module: nn.Module, args: tuple) -> tuple:
        return (F.dropout(args[0], self.p, training=module.training), *args[1:])

    def param_groups(self, model: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each group split into body and head; the head's ``lr`` times ``head_lr_factor``."""
        head = {id(p) for p in classification_head(model).module.parameters()}
        split = []
        for group in groups:
            for is_head in (False, True):
                params = [p for p in group["params"] if (id(p) in head) == is_head]
                if params:
                    factor = self.head_lr_factor if is_head else 1.0
                    split.append({**group, "params": params, "lr": group["lr"] * factor})
        return split
