"""Decoder-only backbones (``backbone.kind: decoder``: GPT-2, Llama, Qwen2 families): causal-LM
fine-tuning for data-to-text and instruction tuning, and the settings every decoder-only model needs.

- Pad token: models without one (GPT-2, Llama) pad with eos (:func:`regbench.models.backbone.load_tokenizer`)
  and ``config.pad_token_id`` is set to it, which is also what the sequence-classification heads use
  to find each row's last non-pad token (the models' own pooling).
- ``backbone.gradient_checkpointing: true`` recomputes each block's activations in backward
  (non-reentrant checkpointing, KV cache off in training); with ``hardware=gpu_bf16`` a 0.5-1B model
  fine-tunes on one GPU. Random draws inside a block (dropout, TLM/DropHead masks) are replayed
  identically in the recomputation (torch restores the RNG state).

Training: ``input_ids = prompt + response + eos`` with the loss on the response and eos only
(:mod:`regbench.data.causal`). Evaluation:

- data-to-text (:class:`CausalLMGenerationModule`): generation from the left-padded prompts with
  ``task.generation`` (beams, new tokens, length penalty), only the new tokens decoded, scored with the
  same multi-reference BLEU / ROUGE-L and written to ``predictions/`` as the seq2seq path;
- instruction tuning (:class:`InstructionModule`): 0-shot multiple choice (MMLU, Hendrycks et al.,
  ICLR 2021): each choice's continuation is scored by its log-likelihood under the model,
  ``sum_t log p(c_t | prompt, c_<t)``, and the prediction is the most likely choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from regbench.metrics import compute
from regbench.models.backbone import BackboneError, load_tokenizer, resolve_path
from regbench.models.base import TRAINING_HOOKS, FineTuneModule
from regbench.models.seq2seq import Seq2SeqModule

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")


def configure_decoder_config(config: Any, tokenizer: Any, backbone_cfg: Any) -> None:
    """Set ``pad_token_id`` (the tokenizer's, eos when the model has none) and turn the KV cache off
    under gradient checkpointing; refuses configs that are not decoder-only."""
    from regbench.models.structure import DECODER_ONLY

    if getattr(config, "is_encoder_decoder", False) or getattr(config, "model_type", None) not in DECODER_ONLY:
        raise BackboneError(
            f"backbone.path={str(backbone_cfg.path)!r} is a {getattr(config, 'model_type', '?')!r} model; "
            f"backbone.kind=decoder supports the decoder-only families {list(DECODER_ONLY)}")
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    if backbone_cfg.get("gradient_checkpointing", False):
        config.use_cache = False


def prepare_decoder_model(model: Any, tokenizer: Any, backbone_cfg: Any) -> Any:
    """Gradient checkpointing when ``backbone.gradient_checkpointing``; generation pads with the pad token."""
    if backbone_cfg.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.pad_token_id = tokenizer.pad_token_id
        if generation.eos_token_id is None:
            generation.eos_token_id = tokenizer.eos_token_id
    return model


def load_decoder_only(auto_class: Any, cfg: Any, regularizer: Any, **config_kwargs: Any) -> tuple[Any, Any]:
    """Tokenizer and ``auto_class`` model of a decoder-only ``backbone.path``: the config with the pad
    token, cache setting and the regularizer's config edits, then the weights, then gradient
    checkpointing (the loop's order: config, weights; the regularizer's ``apply`` is the caller's)."""
    from transformers import AutoConfig

    path = resolve_path(str(cfg.backbone.path))
    tokenizer = load_tokenizer(path, "decoder")
    config = AutoConfig.from_pretrained(path, **config_kwargs)
    configure_decoder_config(config, tokenizer, cfg.backbone)
    regularizer.configure_backbone_config(config)
    model = auto_class.from_pretrained(path, config=config)
    return tokenizer, prepare_decoder_model(model, tokenizer, cfg.backbone)


def load_causal_lm(cfg: Any, regularizer: Any) -> tuple[Any, Any]:
    """Tokenizer and ``AutoModelForCausalLM`` of ``backbone.path`` with the regularizer applied, in training mode."""
    from transformers import AutoModelForCausalLM

    tokenizer, model = load_decoder_only(AutoModelForCausalLM, cfg, regularizer)
    return tokenizer, regularizer.apply(model).train()


def choice_log_likelihoods(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sequence, ``sum_t log p(labels_t | labels_<t)`` over the positions where ``labels != -100``.

    ``logits[:, t]`` predicts token ``t + 1`` (causal LM), so the scored tokens are ``labels[:, 1:]``
    against ``log_softmax(logits[:, :-1])``; computed in float32."""
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:]
    scored = targets != -100
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * scored).sum(dim=-1)


class CausalLMGenerationModule(Seq2SeqModule):
    """Data-to-text on a decoder-only backbone: loss on the target tokens, generation at evaluation
    (the seq2seq module's scoring and predictions files)."""

    honours = TRAINING_HOOKS | {"generate"}

    def load_model(self, cfg: Any, regularizer: Any) -> tuple[Any, Any]:
        return load_causal_lm(cfg, regularizer)

    def generated_texts(self, batch: dict) -> list[str]:
        """Generation from the left-padded prompt; only the new tokens are decoded."""
        prompt = batch["prompt_input_ids"]
        generated = self.regularizer.generate(self.model, input_ids=prompt, attention_mask=batch["prompt_attention_mask"],
                                              **self.generate_kwargs)
        return self.tokenizer.batch_decode(generated[:, prompt.shape[1]:], skip_special_tokens=True)


class InstructionModule(FineTuneModule):
    """Instruction tuning (loss on the response) with 0-shot multiple-choice evaluation by the
    log-likelihood of each choice (:func:`choice_log_likelihoods`). The logits come from the
    regularizer's ``predict_logits`` (LoRA Dropout's test-time ensemble averages them there)."""

    honours = TRAINING_HOOKS | {"predict_logits"}

    def __init__(self, cfg: Any, regularizer: Any):
        super().__init__(cfg, regularizer)
        self.tokenizer, self.model = load_causal_lm(cfg, regularizer)
        self._eval_outputs: dict[int, tuple[list, list, list]] = {}

    def model_inputs(self, batch: dict) -> dict:
        return {k: batch[k] for k in MODEL_INPUTS if k in batch}

    def choice_scores(self, batch: dict) -> torch.Tensor:
        """(B, C) log-likelihood of each choice of each question of an evaluation batch."""
        inputs = {"input_ids": batch["choice_input_ids"], "attention_mask": batch["choice_attention_mask"]}
        logits = self.regularizer.predict_logits(self.model, inputs)
        scores = choice_log_likelihoods(logits, batch["choice_labels"])
        return scores.view(len(batch["answer"]), -1)

    def on_validation_epoch_start(self) -> None:
        self._eval_outputs = {i: ([], [], []) for i in range(len(self.eval_splits))}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        preds = self.choice_scores(batch).argmax(-1)
        for store, values in zip(self._eval_outputs[dataloader_idx], (preds, batch["answer"], batch["example_id"])):
            store.append(values.detach())

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        for idx, split in enumerate(self.eval_splits):
            # Every rank's shard, then each question once (DistributedSampler repeats a few rows).
            preds, labels, ids = (self.all_gather(torch.cat(x)).reshape(-1) for x in self._eval_outputs[idx])
            _, first = np.unique(ids.cpu().numpy(), return_index=True)
            values = compute(list(self.cfg.task.metrics), preds[first].long().cpu().numpy(),
                             labels[first].long().cpu().numpy())
            metrics.update({f"{split}/{name}": value for name, value in values.items()})
        self.last_eval_metrics = metrics
        self.log_dict(metrics, sync_dist=False, add_dataloader_idx=False)
