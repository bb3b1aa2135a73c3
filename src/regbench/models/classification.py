"""Sequence classification / regression LightningModule around ``AutoModelForSequenceClassification``.

The regularizer owns every method-specific step (see :mod:`regbench.regularizers.base`); this
module only runs the standard fine-tuning recipe: AdamW with linear warmup and decay (Devlin et
al. 2019, §A.3), argmax (classification) or the raw score (STS-B regression) at evaluation.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from regbench.metrics import compute
from regbench.models import register_module
from regbench.models.backbone import resolve_path


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf; ``step`` is the optimizer step where it happened."""

    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite training loss {value} at step {step}")
        self.step = step


@register_module("classification", "regression")
class SequenceClassificationModule(L.LightningModule):
    """Fine-tunes an encoder with a classification (or 1-output regression) head."""

    def __init__(self, cfg: Any, regularizer: Any):
        super().__init__()
        from transformers import AutoConfig, AutoModelForSequenceClassification

        self.cfg, self.regularizer = cfg, regularizer
        task, path = cfg.task, resolve_path(str(cfg.backbone.path))
        if task.kind == "regression":
            extra = {"num_labels": 1, "problem_type": "regression"}
        else:
            names = list(task.label_names)
            extra = {"num_labels": len(names), "problem_type": "single_label_classification",
                     "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
        config = AutoConfig.from_pretrained(path, **extra)
        regularizer.configure_backbone_config(config)
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        # from_pretrained returns eval mode, and Lightning keeps submodules' modes: train explicitly.
        self.model = regularizer.apply(model).train()
        self.eval_splits = list(task.eval_splits)
        self._eval_outputs: dict[int, tuple[list, list]] = {}
        self.last_eval_metrics: dict[str, float] = {}

    # -- training -----------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.regularizer.on_train_step(self.global_step, int(self.trainer.estimated_stepping_batches))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.regularizer.training_loss(self.model, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self.global_step, float(loss))
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        optim = self.cfg.optim
        groups = self.regularizer.param_groups(self.model, float(optim.lr), float(optim.weight_decay))
        optimizer = torch.optim.AdamW(groups, lr=float(optim.lr), betas=tuple(optim.betas), eps=float(optim.eps))
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(float(optim.warmup_ratio) * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_outputs = {i: ([], []) for i in range(len(self.eval_splits))}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        labels = batch.pop("labels")
        logits = self.regularizer.predict_logits(self.model, batch)
        preds = logits.squeeze(-1) if self.cfg.task.kind == "regression" else logits.argmax(-1)
        self._eval_outputs[dataloader_idx][0].append(preds.detach().float())
        self._eval_outputs[dataloader_idx][1].append(labels.detach().float())

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        for idx, split in enumerate(self.eval_splits):
            preds, labels = (torch.cat(x) for x in self._eval_outputs[idx])
            # Under DDP every rank holds a shard: gather them (DistributedSampler pads shards with
            # a few repeated rows so that all ranks have the same length).
            preds, labels = self.all_gather(preds).reshape(-1), self.all_gather(labels).reshape(-1)
            if self.cfg.task.kind != "regression":
                preds, labels = preds.long(), labels.long()
            values = compute(list(self.cfg.task.metrics), preds.cpu().numpy(), labels.cpu().numpy())
            metrics.update({f"{split}/{name}": value for name, value in values.items()})
        self.last_eval_metrics = metrics
        self.log_dict(metrics, sync_dist=False, add_dataloader_idx=False)
