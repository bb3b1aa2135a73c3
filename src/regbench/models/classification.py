"""Sequence classification / regression LightningModule around ``AutoModelForSequenceClassification``.

The regularizer owns every method-specific step (see :mod:`regbench.regularizers.base`); this
module only runs the standard fine-tuning recipe (:class:`regbench.models.base.FineTuneModule`),
with argmax (classification) or the raw score (STS-B regression) at evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from regbench.metrics import compute
from regbench.models.backbone import resolve_path
from regbench.models.base import TRAINING_HOOKS, FineTuneModule


class SequenceClassificationModule(FineTuneModule):
    """Fine-tunes an encoder, or a decoder-only model (head on the last non-pad token, as the models
    pool), with a classification (or 1-output regression) head."""

    honours = TRAINING_HOOKS | {"predict_logits", "classification_head"}

    def __init__(self, cfg: Any, regularizer: Any):
        super().__init__(cfg, regularizer)
        from transformers import AutoConfig, AutoModelForSequenceClassification

        task, path = cfg.task, resolve_path(str(cfg.backbone.path))
        if task.kind == "regression":
            extra = {"num_labels": 1, "problem_type": "regression"}
        else:
            names = list(task.label_names)
            extra = {"num_labels": len(names), "problem_type": "single_label_classification",
                     "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
        if str(cfg.backbone.get("kind")) == "decoder":  # pad token (= the head's last-non-pad pooling), checkpointing
            from regbench.models.causal_lm import load_decoder_only

            _, model = load_decoder_only(AutoModelForSequenceClassification, cfg, regularizer, **extra)
        else:
            config = AutoConfig.from_pretrained(path, **extra)
            regularizer.configure_backbone_config(config)
            model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        # from_pretrained returns eval mode, and Lightning keeps submodules' modes: train explicitly.
        self.model = regularizer.apply(model).train()
        self._eval_outputs: dict[int, tuple[list, list, list]] = {}

    # -- evaluation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_outputs = {i: ([], [], []) for i in range(len(self.eval_splits))}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        labels, ids = batch.pop("labels"), batch.pop("example_id")
        logits = self.regularizer.predict_logits(self.model, batch)
        preds = logits.squeeze(-1) if self.cfg.task.kind == "regression" else logits.argmax(-1)
        for store, values in zip(self._eval_outputs[dataloader_idx], (preds.float(), labels.float(), ids)):
            store.append(values.detach())

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Logits through the regularizer (e.g. LoRA Dropout's test-time ensemble), for ``trainer.predict``."""
        batch = {k: v for k, v in batch.items() if k not in ("labels", "example_id")}
        return self.regularizer.predict_logits(self.model, batch)

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        for idx, split in enumerate(self.eval_splits):
            # Under DDP every rank holds a shard: gather them, then drop the rows DistributedSampler
            # repeated to even out the shards, so the score is over the split's rows exactly once.
            preds, labels, ids = (self.all_gather(torch.cat(x)).reshape(-1) for x in self._eval_outputs[idx])
            _, first = np.unique(ids.cpu().numpy(), return_index=True)
            preds, labels = preds[first], labels[first]
            if self.cfg.task.kind != "regression":
                preds, labels = preds.long(), labels.long()
            values = compute(list(self.cfg.task.metrics), preds.cpu().numpy(), labels.cpu().numpy())
            metrics.update({f"{split}/{name}": value for name, value in values.items()})
        self.last_eval_metrics = metrics
        self.log_dict(metrics, sync_dist=False, add_dataloader_idx=False)
