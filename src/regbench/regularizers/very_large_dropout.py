"""``regularizer=very_large_dropout``: very large dropout on the penultimate representation.

Zhang & Bottou, "Fine-tuning with very large dropout" (arXiv 2403.00946, Sec. 3): dropout at a very
high rate (0.9) on the features entering the final linear classifier while fine-tuning, no extra
dropout inside the backbone, and optionally a larger learning rate for the head (reference option
``lastlrfac``, 1 by default). Text analogue (methods.md): dropout ``rate`` on the representation entering the head's final
linear layer (BERT: the pooled output entering ``classifier``; RoBERTa/BART/T5 two-layer heads: the
``dense`` + tanh features entering ``out_proj``). The head's own dropout (``classifier_dropout``) is
set to 0: the two-layer heads apply it twice (before ``dense`` and before ``out_proj``), so raising
it would also drop 90% of the pooled token's features before ``dense``, which the method does not do.
The rate is applied by a forward pre-hook on the final linear layer, identity in eval mode.

Parameters: ``rate`` in [0, 1) (default 0.9), ``head_lr_factor`` in (0, 1000] (default 1: off).
Changes: config, the head's final linear input, optimizer groups. Eval: the unregularized model.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from regbench.regularizers.backbone_config import UnsupportedBackboneError, set_classifier_dropout
from regbench.regularizers.base import Regularizer, check_range, register

# Parameter-name prefixes of the sequence-classification heads of supported families.
HEAD_PREFIXES = ("classifier.", "classification_head.", "pre_classifier.", "score.")
# The head's final linear layer (its input is the penultimate representation), first match wins.
FINAL_LINEAR_NAMES = ("classifier.out_proj", "classification_head.out_proj", "classifier", "score")


def is_head_parameter(name: str) -> bool:
    """True for parameters of the classification head (BERT ``classifier``, BART/T5 ``classification_head``)."""
    return name.startswith(HEAD_PREFIXES)


@register("very_large_dropout")
class VeryLargeDropout(Regularizer):
    """Dropout ``rate`` on the pooled representation entering the classifier; optional head LR factor."""

    def __init__(self, rate: float = 0.9, head_lr_factor: float = 1.0) -> None:
        self.rate = check_range("rate", rate, 0.0, 1.0, high_open=True)
        self.head_lr_factor = check_range("head_lr_factor", head_lr_factor, 0.0, 1000.0, low_open=True)

    def configure_backbone_config(self, config: Any) -> None:
        set_classifier_dropout(config, 0.0)

    def apply(self, model: Any) -> Any:
        modules = dict(model.named_modules())
        final = next((modules[n] for n in FINAL_LINEAR_NAMES if isinstance(modules.get(n), nn.Linear)), None)
        if final is None or not any(is_head_parameter(name) for name, _ in model.named_parameters()):
            raise UnsupportedBackboneError(
                f"very_large_dropout needs a sequence-classification head with a final linear layer "
                f"({', '.join(FINAL_LINEAR_NAMES)}); {type(model).__name__} has none")
        final.register_forward_pre_hook(self._drop_features)
        return model

    def _drop_features(self, module: nn.Module, args: tuple) -> tuple:
        return (F.dropout(args[0], self.rate, training=module.training), *args[1:])

    def param_groups(self, model: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The base groups (no decay on biases/norms), split into body and head (``lr * head_lr_factor``)."""
        groups = super().param_groups(model, lr, weight_decay)
        head = {id(p) for name, p in model.named_parameters() if is_head_parameter(name)}
        split = []
        for group in groups:
            for is_head in (False, True):
                params = [p for p in group["params"] if (id(p) in head) == is_head]
                if params:
                    factor = self.head_lr_factor if is_head else 1.0
                    split.append({**group, "params": params, "lr": group["lr"] * factor})
        return split
