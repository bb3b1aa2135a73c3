"""Checkpoints that survive being killed at any moment, and what a resume needs to continue exactly.

- ``checkpoints/best.ckpt`` (best main metric) and ``checkpoints/last.ckpt`` after every epoch;
  with ``checkpoint.every_n_train_steps=N`` also ``last.ckpt`` every N optimizer steps, so a long
  epoch killed by preemption loses at most N steps.
- Files are written to a temp name and renamed (:class:`AtomicCheckpointIO`): a SIGKILL during a
  save leaves the previous ``last.ckpt`` intact instead of a truncated one that cannot resume.
- The RNG states (python, numpy, torch, CUDA) travel in the checkpoint (:class:`RandomStateCheckpoint`)
  so dropout masks and regularizer noise after a resume are those of an uninterrupted run.
- The run's config fingerprint travels in the checkpoint too (:class:`FingerprintCheckpoint`,
  :mod:`regbench.run_dir`): a checkpoint never continues a run of another config.
- A run stopped by SIGTERM/SIGINT or by its time budget (``trainer.max_time``, :class:`TimeBudget`)
  saves ``last.ckpt`` where it stopped (:class:`InterruptCheckpoint`), mid-epoch, resumable.
- Checkpoints are only read from local files and always with ``torch.load(weights_only=True)``
  (:meth:`AtomicCheckpointIO.load_checkpoint`, :func:`inspect_checkpoint`): no code runs on load.
"""

from __future__ import annotations

import logging
import random
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from regbench.atomic import atomic_path
from regbench.run_dir import CHECKPOINT_KEY

log = logging.getLogger("regbench")


class CheckpointError(ValueError):
    """A checkpoint cannot be read (empty, truncated, not a checkpoint); the message names the file."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves through a temp file and a rename (:func:`regbench.atomic.atomic_path`): readers never
    see a partial file; loads local files only, with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # Lightning would fetch http(s) URLs and unpickle them with weights_only=False.
        if "://" in str(path):
            raise CheckpointError(f"{path}: only local checkpoint files are loaded")
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def inspect_checkpoint(path: str | Path) -> dict[str, Any]:
    """Open a checkpoint file safely (memory-mapped, ``weights_only=True``) and return it, or raise
    :class:`CheckpointError` naming the file and what to do. Folders (sharded states) are returned as ``{}``."""
    path = Path(path)
    if path.is_dir():
        return {}
    how = ("delete it to fall back to a fresh start (resume=never), or point resume=<another .ckpt>")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {how}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated or not a torch checkpoint (no zip directory); {how}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and unsafe-global errors alike)
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); {how}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a Lightning training checkpoint (no state_dict); {how}")
    return checkpoint


class FingerprintCheckpoint(L.Callback):
    """Writes the run's config fingerprint record (:mod:`regbench.run_dir`) into every checkpoint."""

    def __init__(self, record: dict[str, Any]):
        self.record = record

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.record


class TimeBudgetReached(Exception):
    """Training used up ``trainer.max_time``; raised at an optimizer-step boundary on every rank."""


def parse_duration(value: Any) -> float:
    """``trainer.max_time`` in seconds: ``"DD:HH:MM:SS"`` or ``{days, hours, minutes, seconds}``."""
    if isinstance(value, str):
        days, hours, minutes, seconds = (int(x) for x in re.fullmatch(r"(\d+):(\d+):(\d+):(\d+)", value).groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    units = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
    return float(sum(units[k] * float(v) for k, v in dict(value).items()))


class TimeBudget(L.Callback):
    """``trainer.max_time``: stop training at the first optimizer-step boundary after the budget.

    Replaces Lightning's ``Timer`` stop, which ends the epoch: a checkpoint taken there resumes
    with the *next* epoch, and the rest of the interrupted one is never trained. Here the stop is
    an exception at a step boundary (rank 0's clock, broadcast to every rank), :class:`InterruptCheckpoint`
    saves a mid-epoch ``last.ckpt``, and the run is evaluated and recorded ``incomplete``. As with
    Lightning, the budget counts the whole run across resumes (the elapsed time is checkpointed):
    to continue, rerun with a larger ``trainer.max_time``.
    """

    def __init__(self, max_time: Any):
        self.budget_s = parse_duration(max_time)
        self.elapsed_before_s = 0.0
        self._start: float | None = None
        self.reached = False

    def elapsed_s(self) -> float:
        return self.elapsed_before_s + (time.monotonic() - self._start if self._start is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.elapsed_before_s = float(state_dict.get("elapsed_s", 0.0))

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # inside an accumulation window: not a resumable point
        if trainer.strategy.broadcast(self.elapsed_s() >= self.budget_s):
            self.reached = True
            raise TimeBudgetReached(f"trainer.max_time ({self.budget_s:g} s) reached at step {trainer.global_step}")


class InterruptCheckpoint(L.Callback):
    """When training stops early, save ``last.ckpt`` at the step where it stopped.

    Two stops are resumable points: Lightning turns SIGTERM into ``SIGTERMException`` at a batch
    boundary (under DDP rank 0 broadcasts it, so every rank stops at the same batch), and
    :class:`TimeBudget` raises at a step boundary on every rank; there the state is consistent and
    a collective save is safe. Skipped inside validation (it would resume mid-evaluation) and
    inside a gradient-accumulation window (accumulated gradients are not part of a checkpoint);
    ``last.ckpt`` from the periodic saves then stays the resume point.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.saved_step: int | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, TimeBudgetReached)):
            return
        if trainer.sanity_checking or trainer.validating or not trainer.training:
            return
        epoch_loop = trainer.fit_loop.epoch_loop
        if not isinstance(exception, TimeBudgetReached) and not epoch_loop._accumulated_batches_reached():
            log.warning("interrupted inside a gradient-accumulation window: no interrupt checkpoint")
            return
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step


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
