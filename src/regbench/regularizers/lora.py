"""``regularizer=lora``: LoRA adapters through PEFT (Hu et al., ICLR 2022, arXiv 2106.09685).

The backbone is frozen; low-rank adapters ``Delta W = B A * alpha / r`` are added to the target
Linear layers by ``peft.get_peft_model`` and only the adapters and the classification head
(PEFT ``modules_to_save``) are trained. PEFT's own ``lora_dropout`` (dropout on the adapter's
input x) is the ``p`` parameter (formerly ``dropout``).

Parameters (``conf/regularizer/lora.yaml``):
- ``r`` >= 1: adapter rank; ``alpha`` > 0: scaling numerator (scaling = alpha / r).
- ``p`` in [0, 1): PEFT ``lora_dropout``.
- ``target_modules``: module-name suffixes; null = PEFT's per-family default (bert/roberta:
  query,value; bart: q_proj,v_proj; t5: q,v).
- ``modules_to_save``: trainable, saved modules besides the adapters; null = the model's
  classification head (:func:`regbench.models.structure.head_name`).

What it changes: the model (wrapped in a ``PeftModel``). Eval: adapters stay on (they are the
fine-tuned weights); only PEFT's input dropout is off. ``export`` writes the adapter with
``save_pretrained`` to ``<output_dir>/adapter``; the wrapped model's state dict (Lightning
checkpoints) loads back into a freshly built model after :meth:`apply`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from torch import nn

from regbench.models.structure import family_model_types, head_name
from regbench.regularizers.base import Regularizer, RegularizerConfigError, check_integer, check_range

log = logging.getLogger(__name__)


def peft_task_type(model: nn.Module) -> str | None:
    """PEFT task type from the HF model class (decides the PeftModel wrapper and its forward)."""
    cls = type(model).__name__
    if cls.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if cls.endswith("ForConditionalGeneration") or cls.endswith("Seq2SeqLM") or cls == "EncoderDecoderModel":
        return "SEQ_2_SEQ_LM"
    if cls.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    if cls.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    return None


def default_target_modules(model: nn.Module) -> list[str]:
    """PEFT's per-family LoRA targets for the model's ``model_type``, or, for composites (BERT2BERT),
    those of its sub-models' families (:mod:`regbench.models.structure`); error if there are none."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in MAPPING:
        return list(MAPPING[model_type])
    targets = sorted({t for family in family_model_types(model) if family in MAPPING for t in MAPPING[family]})
    if not targets:
        raise RegularizerConfigError(
            f"regularizer.target_modules: no default LoRA targets for model_type {model_type!r}; set it")
    return targets


def _as_names(key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    names = [str(v) for v in value]
    if not names:
        raise RegularizerConfigError(f"regularizer.{key} must be null or a non-empty list of module names")
    return names


class LoRA(Regularizer):
    """LoRA via PEFT: only adapters + head are trainable (arXiv 2106.09685, Sec. 4)."""

    wraps_model = True
    train_only = False  # the adapters are the fine-tuned weights
    renamed_parameters = {"dropout": "p"}

    def __init__(self, r: int = 8, alpha: float = 16.0, p: float = 0.1,
                 target_modules: Sequence[str] | None = None,
                 modules_to_save: Sequence[str] | None = None) -> None:
        self.r = check_integer("r", r, 1)
        self.alpha = check_range("alpha", alpha, 0.0, float("inf"), low_open=True, high_open=True)
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        self.target_modules = _as_names("target_modules", target_modules)
        self.modules_to_save = _as_names("modules_to_save", modules_to_save)

    def lora_config(self, model: nn.Module) -> Any:
        """The ``peft.LoraConfig`` for ``model`` (targets and head resolved per backbone)."""
        from peft import LoraConfig

        targets = self.target_modules or default_target_modules(model)
        heads = self.modules_to_save
        if heads is None:
            heads = [name] if (name := head_name(model)) else None
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.peft_dropout,
                          target_modules=targets, modules_to_save=heads,
                          task_type=peft_task_type(model))

    @property
    def peft_dropout(self) -> float:
        """PEFT's ``lora_dropout`` (dropout on the adapter input)."""
        return self.p

    def apply(self, model: nn.Module) -> nn.Module:
        """Wrap ``model`` with PEFT LoRA; the backbone is frozen, adapters + head train."""
        from peft import get_peft_model

        config = self.lora_config(model)
        log.info("LoRA r=%d on %s; trainable head: %s", self.r, sorted(config.target_modules),
                 config.modules_to_save)
        return get_peft_model(model, config)

    def export(self, model: nn.Module, output_dir: str) -> None:
        """Save the adapter (and head) with PEFT's ``save_pretrained`` to ``output_dir/adapter``."""
        model.save_pretrained(os.path.join(output_dir, "adapter"))

    def describe(self) -> dict[str, Any]:
        """The configured values (recorded before the model exists: null = per-backbone default)."""
        return {"name": self.name, "r": self.r, "alpha": self.alpha, "p": self.p,
                "target_modules": self.target_modules, "modules_to_save": self.modules_to_save}
