"""Config validation: checked once at start, before any model or data is loaded.

Hydra already refuses unknown group options (listing the valid ones); this module checks values.
It imports neither torch nor transformers, so it is cheap to call first.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value is out of its allowed range; the message names the key and the range."""


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _unit_interval(v: float) -> bool:
    return 0 <= v <= 1


def _positive_or_null(v: Any) -> bool:
    return v is None or v > 0


# key -> (predicate, human-readable allowed range)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optim.lr": (_positive, "> 0"),
    "optim.weight_decay": (_non_negative, ">= 0"),
    "optim.warmup_ratio": (_unit_interval, "[0, 1]"),
    "optim.grad_clip": (_non_negative, ">= 0"),
    "optim.eps": (_positive, "> 0"),
    "optim.accumulate_grad_batches": (_positive, ">= 1"),
    "data.batch_size": (_positive, ">= 1"),
    "data.eval_batch_size": (_positive, ">= 1"),
    "data.max_length": (_positive, ">= 1"),
    "data.num_workers": (_non_negative, ">= 0"),
    "data.train_limit": (_positive_or_null, "null or >= 1"),
    "data.eval_limit": (_positive_or_null, "null or >= 1"),
    "trainer.max_epochs": (_positive, ">= 1"),
    "checkpoint.every_n_train_steps": (_positive_or_null, "null or >= 1"),
}

TASK_KINDS = ("classification", "regression", "generation")
# optim.implementation -> torch.optim.AdamW keyword arguments (fused: one kernel for all parameters)
ADAMW_KERNELS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}
# task.kind -> the backbone.kind values that can serve it (conf/backbone/*.yaml say which they are)
BACKBONE_KINDS = {
    "classification": ("encoder",),
    "regression": ("encoder",),
    "generation": ("seq2seq", "encoder_decoder"),
}
BACKBONE_EXAMPLES = {"encoder": "bert-base-cased, roberta-base, minilm-l6",
                     "seq2seq": "bart-base, t5-small", "encoder_decoder": "bert2bert-minilm"}
REQUIRED_TASK_KEYS = ("name", "family", "loader", "kind", "metrics", "main_metric", "eval_splits")


# generation tasks only (task.kind=generation)
GENERATION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task.generation.num_beams": (_positive, ">= 1"),
    "task.generation.max_new_tokens": (_positive, ">= 1"),
    "task.generation.max_target_length": (_positive, ">= 1"),
    "task.generation.length_penalty": (lambda v: math.isfinite(v), "a finite number"),
    "task.max_source_length": (_positive_or_null, "null or >= 1"),
}


def _check(cfg: DictConfig, rules: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    for key, (ok, allowed) in rules.items():
        value = OmegaConf.select(cfg, key, default=None)
        if ok is _positive_or_null:
            if not ok(value):
                raise ConfigError(f"{key}={value!r} is out of range: must be {allowed}")
            continue
        if value is None:
            raise ConfigError(f"{key} is missing (allowed: {allowed})")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or not ok(value):
            raise ConfigError(f"{key}={value!r} is out of range: must be {allowed}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value (key, value and allowed range)."""
    _check(cfg, RULES)
    if cfg.optim.get("implementation", "fused") not in ADAMW_KERNELS:
        raise ConfigError(f"optim.implementation={cfg.optim.implementation!r} is not one of {list(ADAMW_KERNELS)}")
    betas = list(cfg.optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"optim.betas={betas} is out of range: two values in [0, 1)")
    for key in REQUIRED_TASK_KEYS:
        if OmegaConf.select(cfg, f"task.{key}", default=None) in (None, ""):
            raise ConfigError(f"task.{key} is missing from the task config")
    if cfg.task.kind not in TASK_KINDS:
        raise ConfigError(f"task.kind={cfg.task.kind!r} is not one of {list(TASK_KINDS)}")
    if cfg.task.kind == "generation":
        _check(cfg, GENERATION_RULES)
    fits = BACKBONE_KINDS[cfg.task.kind]
    if cfg.backbone.get("kind") not in fits:
        examples = "; ".join(f"{k}: {BACKBONE_EXAMPLES[k]}" for k in fits)
        raise ConfigError(
            f"backbone={cfg.backbone.name} (backbone.kind={cfg.backbone.get('kind')!r}) cannot run task "
            f"{cfg.task.family}/{cfg.task.name} (task.kind={cfg.task.kind!r}): it needs backbone.kind in "
            f"{list(fits)} ({examples})")
    if cfg.task.main_metric not in cfg.task.metrics:
        raise ConfigError(f"task.main_metric={cfg.task.main_metric!r} is not in task.metrics={list(cfg.task.metrics)}")
    if str(cfg.resume) not in ("auto", "never") and not str(cfg.resume).endswith(".ckpt"):
        raise ConfigError(f"resume={cfg.resume!r} must be auto, never or a path to a .ckpt file")
