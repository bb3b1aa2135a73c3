"""``regularizer=very_large_dropout``: very large dropout on the penultimate representation.

Zhang & Bottou, "Fine-tuning with very large dropout" (arXiv 2403.00946, Sec. 3): dropout at a very
high rate (0.9) on the features entering the final linear classifier while fine-tuning, no extra
dropout inside the backbone, and optionally a larger learning rate for the head (reference option
``lastlrfac``, 1 by default). Text analogue (methods.md): the backbone's ``classifier_dropout``, the
dropout its sequence-classification head applies to the pooled representation (BERT: exactly the
input of the classifier; RoBERTa/BART/T5 two-layer heads apply the same rate before their dense
layer and before ``out_proj``).

Parameters: ``rate`` in [0, 1) (default 0.9), ``head_lr_factor`` in (0, 1000] (default 1: off).
Changes: config, optimizer groups. Eval: no dropout (the unregularized model).
"""

from __future__ import annotations

from typing import Any

from regbench.regularizers.backbone_config import UnsupportedBackboneError, set_classifier_dropout
from regbench.regularizers.base import Regularizer, check_range, register

# Parameter-name prefixes of the sequence-classification heads of supported families.
HEAD_PREFIXES = ("classifier.", "classification_head.", "pre_classifier.", "score.")


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
        set_classifier_dropout(config, self.rate)

    def apply(self, model: Any) -> Any:
        if not any(is_head_parameter(name) for name, _ in model.named_parameters()):
            raise UnsupportedBackboneError(
                f"very_large_dropout needs a sequence-classification head ({', '.join(HEAD_PREFIXES)}),"
                f" {type(model).__name__} has none")
        return model

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
