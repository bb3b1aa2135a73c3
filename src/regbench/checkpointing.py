"""Checkpoints that survive being killed at any moment, and what a resume needs to continue exactly.

- ``checkpoints/best.ckpt`` (best main metric) and ``checkpoints/last.ckpt`` after every epoch;
  with ``checkpoint.every_n_train_steps=N`` also ``last.ckpt`` every N optimizer steps, so a long
  epoch killed by preemption loses at most N steps.
- Files are written to a temp name and renamed (:class:`AtomicCheckpointIO`): a SIGKILL during a
  save leaves the previous ``last.ckpt`` intact instead of a truncated one that cannot resume.
- The RNG states (python, numpy, torch, CUDA) travel in the checkpoint (:class:`RandomStateCheckpoint`)
  so dropout masks and regularizer noise after a resume are those of an uninterrupted run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<path>.tmp`` then ``os.replace``: readers never see a partial file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class RandomStateCheckpoint(L.Callback):
    """Stores the process's RNG states in checkpoints and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        # Plain types and tensors only: Lightning loads checkpoints with torch.load(weights_only=True).
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {"python": random.getstate(), "torch": torch.get_rng_state(),
                 "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _last_checkpoint(dirpath: Path, **trigger: Any) -> ModelCheckpoint:
    # Lightning >= 2.6 refreshes `save_last` files only when a top-k file was saved in the same
    # step, so a run whose metric stopped improving kept a stale last.ckpt. An unmonitored top-1
    # checkpoint named "last" is rewritten at every trigger instead.
    return ModelCheckpoint(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False, **trigger)


def checkpoint_callbacks(cfg: Any, output_dir: Path, monitor: str) -> list[L.Callback]:
    """Best checkpoint at validation, ``last.ckpt`` every epoch (and every N steps when configured)."""
    dirpath = output_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor, mode="max",
                        save_top_k=int(cfg.checkpoint.save_top_k), auto_insert_metric_name=False),
        RandomStateCheckpoint(),
    ]
    if cfg.checkpoint.save_last:
        callbacks.append(_last_checkpoint(dirpath))
        every = cfg.checkpoint.get("every_n_train_steps")
        if every:  # a second trigger: one ModelCheckpoint cannot save both per epoch and per N steps
            callbacks.append(_last_checkpoint(dirpath, every_n_train_steps=int(every)))
    return callbacks
