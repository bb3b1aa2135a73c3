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
}

TASK_KINDS = ("classification", "regression", "generation")
REQUIRED_TASK_KEYS = ("name", "family", "loader", "kind", "metrics", "main_metric", "eval_splits")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value (key, value and allowed range)."""
    for key, (ok, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if key.endswith("_limit"):
            if not ok(value):
                raise ConfigError(f"{key}={value!r} is out of range: must be {allowed}")
            continue
        if value is None:
            raise ConfigError(f"{key} is missing (allowed: {allowed})")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or not ok(value):
            raise ConfigError(f"{key}={value!r} is out of range: must be {allowed}")
    betas = list(cfg.optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"optim.betas={betas} is out of range: two values in [0, 1)")
    for key in REQUIRED_TASK_KEYS:
        if OmegaConf.select(cfg, f"task.{key}", default=None) in (None, ""):
            raise ConfigError(f"task.{key} is missing from the task config")
    if cfg.task.kind not in TASK_KINDS:
        raise ConfigError(f"task.kind={cfg.task.kind!r} is not one of {list(TASK_KINDS)}")
    if cfg.task.main_metric not in cfg.task.metrics:
        raise ConfigError(f"task.main_metric={cfg.task.main_metric!r} is not in task.metrics={list(cfg.task.metrics)}")
    if str(cfg.resume) not in ("auto", "never") and not str(cfg.resume).endswith(".ckpt"):
        raise ConfigError(f"resume={cfg.resume!r} must be auto, never or a path to a .ckpt file")
