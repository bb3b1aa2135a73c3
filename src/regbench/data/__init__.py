"""Task data: a loader registry (hub + official local layouts) and the datamodule.

A loader is ``fn(task_cfg) -> datasets.DatasetDict`` with a ``train`` split and one split per
``task.eval_splits``; classification rows carry ``task.text_keys`` + ``label``. Loaders register
with :func:`register_loader` under the name that task YAMLs give as ``task.loader``.
"""

from __future__ import annotations

from typing import Any, Callable

LOADERS: dict[str, Callable[[Any], Any]] = {}


class DataError(ValueError):
    """Task data is missing or malformed; the message names the file/row/column and the fix."""


def register_loader(name: str):
    """Decorator: make a loader selectable as ``task.loader: <name>``."""

    def wrap(fn):
        LOADERS[name] = fn
        return fn

    return wrap


def load_task(task_cfg: Any):
    """Load the raw ``DatasetDict`` of a task through its registered loader."""
    from regbench.data import clue, d2t, glue  # noqa: F401  (registers built-in loaders)

    if task_cfg.loader not in LOADERS:
        raise DataError(f"task.loader={task_cfg.loader!r} is unknown; valid: {sorted(LOADERS)}")
    return LOADERS[task_cfg.loader](task_cfg)
