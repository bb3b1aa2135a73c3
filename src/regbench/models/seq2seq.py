"""Data-to-text LightningModule: teacher-forced training, beam-search generation at evaluation.

Backbones (``backbone.kind``):

- ``seq2seq``: any ``AutoModelForSeq2SeqLM`` (BART, T5, or a saved ``EncoderDecoderModel``);
- ``encoder_decoder``: BERT2BERT (Rothe, Narayan & Severyn, TACL 2020), an ``EncoderDecoderModel``
  warm-started from one encoder checkpoint for both sides (the decoder gains causal self-attention
  and randomly initialised cross-attention); its decoder starts from [CLS] and stops at [SEP].

Each validation generates for every evaluation split with ``task.generation`` (beam size, maximum
new tokens, length penalty), scores with ``task.metrics`` against all references, and writes
``predictions/<split>_step<step>.jsonl`` (source, prediction, references) in the run dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regbench.metrics import compute
from regbench.models.backbone import BackboneError, resolve_path
from regbench.atomic import write_text_atomic
from regbench.models.base import TRAINING_HOOKS, FineTuneModule

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
GENERATION_KEYS = ("num_beams", "max_new_tokens", "length_penalty", "no_repeat_ngram_size", "early_stopping")


def build_seq2seq_model(path: str, backbone_kind: str, regularizer: Any, tokenizer: Any) -> Any:
    """Load a seq2seq backbone (or warm-start BERT2BERT), with the regularizer's config changes applied."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, EncoderDecoderConfig, EncoderDecoderModel

    config = AutoConfig.from_pretrained(path)
    if getattr(config, "is_encoder_decoder", False):
        regularizer.configure_backbone_config(config)
        return AutoModelForSeq2SeqLM.from_pretrained(path, config=config)
    if backbone_kind != "encoder_decoder":
        raise BackboneError(f"backbone.path={path!r} is an encoder-only {config.model_type!r} model; generation "
                            f"needs a seq2seq backbone, or backbone.kind=encoder_decoder to warm-start BERT2BERT")
    decoder = AutoConfig.from_pretrained(path, is_decoder=True, add_cross_attention=True)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(config, decoder)
    regularizer.configure_backbone_config(config)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        path, path, encoder_config=config.encoder, decoder_config=config.decoder)
    special = {"decoder_start_token_id": tokenizer.cls_token_id, "bos_token_id": tokenizer.cls_token_id,
               "eos_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id}
    for key, value in special.items():
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    return model


class Seq2SeqModule(FineTuneModule):
    """Fine-tunes an encoder-decoder on (source, target) pairs; scores generated text."""

    honours = TRAINING_HOOKS | {"generate"}

    def __init__(self, cfg: Any, regularizer: Any):
        super().__init__(cfg, regularizer)
        self.tokenizer, self.model = self.load_model(cfg, regularizer)
        gen = cfg.task.generation
        self.generate_kwargs = {k: gen[k] for k in GENERATION_KEYS if gen.get(k) is not None}
        self.predictions_dir = Path(cfg.paths.output_dir) / "predictions"
        self._outputs: dict[int, list[dict]] = {}

    def load_model(self, cfg: Any, regularizer: Any) -> tuple[Any, Any]:
        """(tokenizer, model with the regularizer applied, in training mode)."""
        from transformers import AutoTokenizer

        path = resolve_path(str(cfg.backbone.path))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = build_seq2seq_model(path, str(cfg.backbone.kind), regularizer, tokenizer)
        return tokenizer, regularizer.apply(model).train()

    def model_inputs(self, batch: dict) -> dict:
        return {k: batch[k] for k in MODEL_INPUTS if k in batch}

    # -- evaluation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._outputs = {i: [] for i in range(len(self.eval_splits))}

    def generated_texts(self, batch: dict) -> list[str]:
        """The batch's generated texts (through the regularizer's ``generate`` owner hook)."""
        generated = self.regularizer.generate(self.model, input_ids=batch["input_ids"],
                                              attention_mask=batch["attention_mask"], **self.generate_kwargs)
        return self.tokenizer.batch_decode(generated, skip_special_tokens=True)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        texts = self.generated_texts(batch)
        self._outputs[dataloader_idx] += [
            {"example_id": int(i), "source": s, "prediction": " ".join(p.split()), "references": list(r)}
            for i, s, p, r in zip(batch["example_id"], batch["source"], texts, batch["references"])]

    def _gathered(self, rows: list[dict]) -> list[dict]:
        """Every rank's rows, once each (DistributedSampler repeats a few rows to even out shards)."""
        if self.trainer.world_size > 1:
            import torch.distributed as dist

            shards: list[Any] = [None] * self.trainer.world_size
            dist.all_gather_object(shards, rows)
            rows = [row for shard in shards for row in shard]
        return sorted({row["example_id"]: row for row in rows}.values(), key=lambda row: row["example_id"])

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        for idx, split in enumerate(self.eval_splits):
            rows = self._gathered(self._outputs[idx])
            values = compute(list(self.cfg.task.metrics), [r["prediction"] for r in rows],
                             [r["references"] for r in rows])
            metrics.update({f"{split}/{name}": value for name, value in values.items()})
            if self.trainer.is_global_zero:
                self.predictions_dir.mkdir(parents=True, exist_ok=True)
                lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                write_text_atomic(self.predictions_dir / f"{split}_step{self.global_step}.jsonl", lines)
        self.last_eval_metrics = metrics
        self.log_dict(metrics, sync_dist=False, add_dataloader_idx=False)
