"""Run records: ``metrics.json`` written atomically after every validation, every checkpoint and at the end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L

from regbench.atomic import write_json_atomic, write_text_atomic  # noqa: F401  (write_text_atomic: re-export)
from regbench.hardware import is_global_zero


def token_counts(batch: dict) -> tuple[int, int]:
    """(real, padded) tokens of a batch's model input: ``input_ids`` elements computed on, and those
    that ``attention_mask`` marks as real (all of them without a mask)."""
    ids = batch.get("input_ids")
    if ids is None or not hasattr(ids, "numel"):
        return 0, 0
    mask = batch.get("attention_mask")
    padded = int(ids.numel())
    return (int(mask.sum()) if mask is not None else padded), padded


def _tokens_record(real: int, padded: int) -> dict[str, Any]:
    return {"real": real, "padded": padded, "padding_ratio": round(padded / real, 4) if real else None}


class RunRecorder(L.Callback):
    """Keeps the run's record (history, best/final metrics, throughput) and persists it.

    Throughput counts training samples over training wall time, validation time excluded, and
    the input tokens of training and evaluation batches (``tokens.train`` / ``tokens.eval``: real,
    padded, padded/real), i.e. how much of the compute was padding. Under DDP the counts are this
    process's batches times the number of processes (as samples are), the ratio this process's.
    The record's training state also travels in every checkpoint (``state_dict``): on resume it is
    restored as of the checkpoint, so validations that ran after that checkpoint (and are repeated
    by the resumed run) are not counted twice. Only global rank 0 writes the file.

    ``wall_time_s`` is the wall time of every process segment of the run (first start, each resume):
    ``prior_wall_s`` (what the record said when this segment started) plus this segment's time, written
    at every save, so a segment that is killed still counts up to its last save.
    """

    STATE_KEYS = ("history", "best", "best_step", "final", "train_samples", "train_time_s", "tokens")

    def __init__(self, path: str | Path, record: dict[str, Any], main_metric: str, prior_wall_s: float = 0.0):
        self.path, self.record, self.main_metric = Path(path), record, main_metric
        self.prior_wall_s, self._segment_start = float(prior_wall_s), time.perf_counter()
        self.record.setdefault("history", [])
        self.record.update(status="running", main_metric=main_metric)
        self._samples = self.record.get("train_samples", 0)
        self._train_time = self.record.get("train_time_s", 0.0)
        self._load_tokens()
        self._loss_sum = 0.0
        self._loss_count = 0
        self._t0 = self._val_t0 = None
        self._val_time = 0.0

    # -- checkpointed state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.update_throughput()
        state = {k: self.record[k] for k in self.STATE_KEYS if k in self.record}
        state["loss_sum"], state["loss_count"] = self._loss_sum, self._loss_count
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in self.STATE_KEYS:
            self.record.pop(key, None)
        self.record.update({k: v for k, v in state_dict.items() if k in self.STATE_KEYS})
        self.record.setdefault("history", [])
        self._samples = self.record.get("train_samples", 0)
        self._train_time = self.record.get("train_time_s", 0.0)
        self._load_tokens()
        self._loss_sum, self._loss_count = state_dict.get("loss_sum", 0.0), state_dict.get("loss_count", 0)

    def _load_tokens(self) -> None:
        tokens = self.record.get("tokens") or {}
        self._tokens = {part: [int((tokens.get(part) or {}).get("real", 0)), int((tokens.get(part) or {}).get("padded", 0))]
                        for part in ("train", "eval")}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self.save(trainer)  # wall time and counters on disk at every resume point

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Resuming: note where training continued from (also when the checkpoint was already final).
        self.record.setdefault("resumes", []).append({"step": checkpoint.get("global_step"),
                                                      "epoch": checkpoint.get("epoch"),
                                                      "checkpoint": str(trainer.ckpt_path)})

    # -- timing -------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._val_time = time.perf_counter(), 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_t0 is not None:
            self._val_time += time.perf_counter() - self._val_t0
        if not trainer.sanity_checking:
            self._record_validation(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._t0 is not None:
            self._train_time += time.perf_counter() - self._t0 - self._val_time
            self._t0 = None

    def _count_tokens(self, part: str, batch: Any, world_size: int) -> None:
        if isinstance(batch, Mapping):  # a dict or transformers' BatchEncoding
            real, padded = token_counts(batch)
            self._tokens[part][0] += real * world_size
            self._tokens[part][1] += padded * world_size

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._count_tokens("eval", batch, trainer.world_size)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._count_tokens("train", batch, trainer.world_size)
        self._samples += int(batch["labels"].shape[0]) * trainer.world_size
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss.detach())
            self._loss_count += 1

    # -- records ------------------------------------------------------------------------------
    def _record_validation(self, trainer, pl_module) -> None:
        # Runs in on_validation_end: callbacks' epoch-end hooks fire before the module's, where the
        # metrics are computed.
        metrics = dict(getattr(pl_module, "last_eval_metrics", {}))
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        if self._loss_count:
            row["train/loss"] = self._loss_sum / self._loss_count
            self._loss_sum, self._loss_count = 0.0, 0
        row.update(metrics)
        history = self.record["history"]
        history.append(row)
        best = self.record.get("best")
        if self.main_metric in metrics and (not best or metrics[self.main_metric] > best.get(self.main_metric, float("-inf"))):
            self.record["best"] = metrics
            self.record["best_step"] = trainer.global_step
        self.record["final"] = metrics
        self.save(trainer)

    def update_throughput(self, trainer=None) -> None:
        train_time = self._train_time
        if self._t0 is not None:  # interrupted mid-epoch
            train_time += time.perf_counter() - self._t0 - self._val_time
        self.record["train_samples"] = self._samples
        self.record["train_time_s"] = round(train_time, 3)
        self.record["train_samples_per_s"] = round(self._samples / train_time, 3) if train_time > 0 else None
        self.record["tokens"] = {part: _tokens_record(*counts) for part, counts in self._tokens.items()}
        real = self._tokens["train"][0]
        self.record["train_real_tokens_per_s"] = round(real / train_time, 3) if train_time > 0 else None
        if trainer is not None:
            self.record["train_steps"] = trainer.global_step

    @property
    def last_evaluated_step(self) -> int | None:
        """The optimizer step of the latest recorded validation (None before any)."""
        history = self.record.get("history") or []
        return history[-1]["step"] if history else None

    def save(self, trainer=None) -> None:
        self.update_throughput(trainer)
        self.record["wall_time_s"] = round(self.prior_wall_s + time.perf_counter() - self._segment_start, 3)
        if trainer.is_global_zero if trainer is not None else is_global_zero():
            write_json_atomic(self.path, self.record)
