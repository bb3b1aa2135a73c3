"""LightningModules by task kind, and backbone resolution.

A module class registers for the task kinds it serves (:func:`register_module`) and is built as
``cls(cfg, regularizer)``; the training loop never names a concrete class.
"""

from __future__ import annotations

from typing import Any

MODULES: dict[str, type] = {}


def register_module(*kinds: str):
    """Class decorator: serve ``task.kind`` in ``kinds``."""

    def wrap(cls):
        for kind in kinds:
            MODULES[kind] = cls
        return cls

    return wrap


def build_module(cfg: Any, regularizer: Any):
    """Instantiate the LightningModule registered for ``cfg.task.kind``."""
    from regbench.models import classification, seq2seq  # noqa: F401  (registers built-in modules)

    if cfg.task.kind not in MODULES:
        raise KeyError(f"no module registered for task.kind={cfg.task.kind!r}; valid: {sorted(MODULES)}")
    return MODULES[cfg.task.kind](cfg, regularizer)
