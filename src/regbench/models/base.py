"""What every fine-tuning LightningModule shares: the regularizer's training hooks, the loss guard,
and the optimizer recipe (AdamW with linear warmup and decay, Devlin et al. 2019, §A.3).

The optimizer and the scheduler are Hydra ``_partial_`` targets (``optim.optimizer``,
``optim.scheduler``) completed here: the optimizer with the parameter groups (no decay on biases and
norms, refined by the regularizers) and ``optim.implementation``'s kernel keywords, the scheduler with
the warmup and total step counts.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from regbench.config import ADAMW_KERNELS

# Regularizer hooks every fine-tuning module calls (regbench.regularizers.base); subclasses add their
# evaluation hook and the model features they provide.
TRAINING_HOOKS = frozenset({"configure_backbone_config", "apply", "on_train_step", "wrap_forward", "training_loss",
                            "penalty", "before_optimizer_step", "param_groups", "export"})


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf; ``step`` is the optimizer step where it happened."""

    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite training loss {value} at step {step}")
        self.step = step


class FineTuneModule(L.LightningModule):
    """Base class: subclasses build ``self.model`` and implement evaluation.

    ``model_inputs(batch)`` selects what the model is called with in training (a batch may carry
    fields for scoring only, e.g. the references of generation tasks). ``honours`` lists the
    regularizer hooks and model features the module really uses; a method needing anything else is
    refused at start-up (:meth:`regbench.regularizers.composition.RegularizerStack.check_task`).
    """

    honours: frozenset[str] = TRAINING_HOOKS

    def __init__(self, cfg: Any, regularizer: Any):
        super().__init__()
        self.cfg, self.regularizer = cfg, regularizer
        self.eval_splits = list(cfg.task.eval_splits)
        self.last_eval_metrics: dict[str, float] = {}

    def model_inputs(self, batch: dict) -> dict:
        return batch

    # -- checkpoints: frozen parameters (LoRA's backbone) are rebuilt from the pretrained weights --
    def _frozen_keys(self) -> set[str]:
        return {f"model.{name}" for name, p in self.model.named_parameters() if not p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        frozen, state = self._frozen_keys(), checkpoint.get("state_dict")
        if frozen and state is not None:
            checkpoint["state_dict"] = {k: v for k, v in state.items() if k not in frozen}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict")
        if state is not None:  # strict loading stays on: the frozen weights come from this model
            own = self.state_dict()
            state.update({k: own[k] for k in self._frozen_keys() if k not in state and k in own})

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.regularizer.on_train_step(self.global_step, int(self.trainer.estimated_stepping_batches))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.regularizer.training_loss(self.model, self.model_inputs(batch))
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self.global_step, float(loss))
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.regularizer.before_optimizer_step(self.model, optimizer)

    def configure_optimizers(self):
        from hydra.utils import instantiate

        optim = self.cfg.optim
        groups = self.regularizer.param_groups(self.model, float(optim.lr), float(optim.weight_decay))
        optimizer = instantiate(optim.optimizer, _convert_="all")(groups, **ADAMW_KERNELS[str(optim.implementation)])
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = instantiate(optim.scheduler)(optimizer, num_warmup_steps=int(float(optim.warmup_ratio) * total),
                                                 num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
