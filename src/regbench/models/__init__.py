"""LightningModules by task kind, and backbone resolution.

``task_kinds.<task.kind>.module`` in ``conf/config.yaml`` names the module class by dotted path
(resolved with ``hydra.utils``), built as ``cls(cfg, regularizer)``; the training loop never names a
concrete class. Each class declares the regularizer hooks and model features it honours
(``FineTuneModule.honours``), checked against the selected methods before any weights load.
"""

from __future__ import annotations

from typing import Any


def task_kind(cfg: Any) -> Any:
    """The ``task_kinds`` entry of ``cfg.task.kind`` (module, encoding, backbones), with the module and
    encoding of ``by_backbone.<backbone.kind>`` where the entry has one (decoder-only generation)."""
    kinds = cfg.task_kinds
    if cfg.task.kind not in kinds:
        raise KeyError(f"task.kind={cfg.task.kind!r} has no entry in task_kinds; valid: {sorted(kinds)}")
    entry = kinds[cfg.task.kind]
    override = (entry.get("by_backbone") or {}).get(str(cfg.backbone.kind))
    if override is None:
        return entry
    return {"module": override.get("module", entry.module), "encoding": override.get("encoding", entry.encoding),
            "backbones": list(entry.backbones)}


def module_class(cfg: Any) -> type:
    """The LightningModule class serving ``cfg.task.kind`` (imported, not instantiated)."""
    from hydra.utils import get_class

    return get_class(str(task_kind(cfg)["module"]))


def encoding_factory(cfg: Any) -> Any:
    """The tokenization factory of ``cfg.task.kind``: ``fn(tokenizer, task_cfg, max_length) -> Encoding``."""
    from hydra.utils import get_method

    return get_method(str(task_kind(cfg)["encoding"]))


def build_module(cfg: Any, regularizer: Any):
    """Instantiate the LightningModule of ``cfg.task.kind``."""
    return module_class(cfg)(cfg, regularizer)
