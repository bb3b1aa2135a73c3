"""Config validation: one declared schema for every value, checked once before any data or weights.

Hydra refuses unknown keys and unknown group options (listing the valid ones); this module checks
the *values*. Each key of :data:`SCHEMA` has a rule that states the type and the allowed range:

- integers are integers: ``data.batch_size=2.5`` or ``optim.accumulate_grad_batches=1.5`` are
  refused instead of silently truncated, and so is ``seed=abc``;
- numbers are finite: ``nan`` and ``inf`` fail every numeric rule;
- booleans are ``true``/``false``: the string ``"no"`` is not a boolean (Python would read it as true);
- choices list their options, lists their length and element rule.

Relations between keys (the backbone kind a task needs, the main metric among the metrics, local
checkpoint paths for ``resume``) are the :data:`RELATIONS` below. Regularizer parameters are
checked by the regularizer classes themselves (``regbench.regularizers.base``), with the same rules.
It imports neither torch nor transformers, so it is cheap to call first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf


def method_names(node: Any) -> str:
    """``${combination:${regularizer}}``: the selected methods in order, joined with ``+`` (``mixout+wdecay``),
    for run dirs, W&B names and tags."""
    return "+".join(str(key) for key in (node or {}))


def register_resolvers() -> None:
    """Register the resolvers ``conf/`` uses (called when :mod:`regbench` is imported)."""
    if not OmegaConf.has_resolver("combination"):
        OmegaConf.register_new_resolver("combination", method_names)


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""


# -- rules ------------------------------------------------------------------------------------------
class Rule:
    """``problem(value)`` is None when the value is allowed, else the end of the error message."""

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError

    def allows(self, value: Any) -> bool:
        return self.problem(value) is None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds_text(ge: Any, gt: Any, le: Any, lt: Any) -> str:
    low = (ge, "[", ">=") if ge is not None else (gt, "(", ">") if gt is not None else None
    high = (le, "]", "<=") if le is not None else (lt, ")", "<") if lt is not None else None
    if low and high:
        return f"{low[1]}{low[0]}, {high[0]}{high[1]}"
    if low:
        return f"{low[2]} {low[0]}"
    if high:
        return f"{high[2]} {high[0]}"
    return ""


def _in_bounds(value: float, ge: Any, gt: Any, le: Any, lt: Any) -> bool:
    return not ((ge is not None and value < ge) or (gt is not None and value <= gt)
                or (le is not None and value > le) or (lt is not None and value >= lt))


@dataclass(frozen=True)
class Bounded(Rule):
    """A number within optional bounds (``ge``/``gt`` below, ``le``/``lt`` above)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    @property
    def bounds(self) -> str:
        return _bounds_text(self.ge, self.gt, self.le, self.lt)

    def in_bounds(self, value: float) -> bool:
        return _in_bounds(value, self.ge, self.gt, self.le, self.lt)


@dataclass(frozen=True)
class Int(Bounded):
    """An integer (not a float, not a bool, not a string) within the bounds."""

    def problem(self, value: Any) -> str | None:
        if not _is_int(value):
            return f"must be an integer{' ' + self.bounds if self.bounds else ''} (got {type(value).__name__})"
        return None if self.in_bounds(value) else f"is out of range: must be {self.bounds}"


@dataclass(frozen=True)
class Float(Bounded):
    """A finite number (integers accepted) within the bounds."""

    def problem(self, value: Any) -> str | None:
        if not _is_number(value):
            return f"must be a number{' ' + self.bounds if self.bounds else ''} (got {type(value).__name__})"
        if math.isfinite(value) and self.in_bounds(value):
            return None
        return f"is out of range: must be {self.bounds or 'a finite number'}" + (
            " (a finite number)" if self.bounds and not math.isfinite(value) else "")


@dataclass(frozen=True)
class Bool(Rule):
    def problem(self, value: Any) -> str | None:
        if not isinstance(value, bool):
            return f"must be true or false (got {type(value).__name__})"
        return None


@dataclass(frozen=True)
class Str(Rule):
    """A non-empty string."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return f"must be a non-empty string (got {type(value).__name__})"
        return None


class Choice(Rule):
    def __init__(self, *options: Any):
        self.options = options

    def problem(self, value: Any) -> str | None:
        # type-strict: -1.0 is not the option -1, True is not 1
        if not any(type(value) is type(option) and value == option for option in self.options):
            return f"is not one of {list(self.options)}"
        return None


class Optional(Rule):
    """``null`` or the inner rule."""

    def __init__(self, inner: Rule):
        self.inner = inner

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        found = self.inner.problem(value)
        return None if found is None else f"{found} (or null)"


class AnyOf(Rule):
    """Allowed when one of the rules allows it (``devices: 2 | auto | [0, 1]``)."""

    def __init__(self, *rules: Rule, text: str):
        self.rules, self.text = rules, text

    def problem(self, value: Any) -> str | None:
        if any(rule.allows(value) for rule in self.rules):
            return None
        return f"must be {self.text}"


class ListOf(Rule):
    def __init__(self, item: Rule, length: int | None = None, min_length: int = 0):
        self.item, self.length, self.min_length = item, length, min_length

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f"must be a list (got {type(value).__name__})"
        if self.length is not None and len(value) != self.length:
            return f"must be a list of {self.length} values (got {len(value)})"
        if len(value) < self.min_length:
            return f"must be a list of at least {self.min_length} value(s)"
        for i, item in enumerate(value):
            found = self.item.problem(item)
            if found:
                return f"item {i} ({item!r}) {found}"
        return None


class Duration(Rule):
    """Lightning's ``max_time``: ``"DD:HH:MM:SS"`` or ``{days, hours, minutes, seconds}`` (finite, >= 0)."""

    UNITS = ("days", "hours", "minutes", "seconds")
    TEXT = 'a duration "DD:HH:MM:SS" or {days: .., hours: .., minutes: .., seconds: ..}'

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", value):
            return None
        if (isinstance(value, dict) and value and set(value) <= set(self.UNITS)
                and all(Float(ge=0).allows(v) for v in value.values())):
            return None
        return f"must be {self.TEXT}"


class Pattern(Rule):
    def __init__(self, regex: str, text: str):
        self.regex, self.text = re.compile(regex), text

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not self.regex.fullmatch(value):
            return f"must be {self.text}"
        return None


class Target(Rule):
    """A Hydra object node: a mapping with a dotted ``_target_`` path (``{_target_: pkg.mod.fn, ...}``)."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict) or not isinstance(value.get("_target_"), str) or not value["_target_"]:
            return "must be a mapping with a dotted _target_ path (e.g. {_target_: regbench.data.glue.load_glue})"
        return None


# -- the schema -------------------------------------------------------------------------------------
# optim.implementation -> torch.optim.AdamW keyword arguments (fused: one kernel for all parameters)
ADAMW_KERNELS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}
# Which task kind a backbone kind serves is config (task_kinds.<kind>.backbones); examples for messages:
BACKBONE_EXAMPLES = {"encoder": "bert-base-cased, roberta-base, minilm-l6",
                     "seq2seq": "bart-base, t5-small", "encoder_decoder": "bert2bert-minilm",
                     "decoder": "gpt2, smollm2-135m, qwen2.5-0.5b"}
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "16", "bf16",
              "transformer-engine", "transformer-engine-float16", 16, 32, 64)


def _generation(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "task.kind", default=None) == "generation"


def _classification(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "task.kind", default=None) in ("classification", "regression")


@dataclass(frozen=True)
class Key:
    """A schema entry: the rule, whether the key must be present, and when it applies."""

    rule: Rule
    required: bool = True
    when: Callable[[DictConfig], bool] | None = None


SCHEMA: dict[str, Key] = {
    "seed": Key(Int(ge=0, le=2**32 - 1)),  # Lightning silently replaces seeds outside numpy's range by 0
    "resume": Key(Str()),
    "raise_on_failure": Key(Bool()),
    # data
    "data.batch_size": Key(Int(ge=1)),
    "data.eval_batch_size": Key(Int(ge=1)),
    "data.max_length": Key(Int(ge=1)),
    "data.num_workers": Key(Int(ge=0)),
    "data.train_limit": Key(Optional(Int(ge=1))),
    "data.eval_limit": Key(Optional(Int(ge=1))),
    "data.group_by_length": Key(Bool()),
    "data.sort_eval_by_length": Key(Bool()),
    "data.cache_dir": Key(Str()),
    # trainer (Lightning arguments regbench sets; others are checked by Lightning)
    "trainer.max_epochs": Key(AnyOf(Int(ge=1), Choice(-1), text="an integer >= 1 (or -1 with trainer.max_steps)")),
    "trainer.max_steps": Key(Int(ge=-1)),
    "trainer.val_check_interval": Key(AnyOf(Int(ge=1), Float(gt=0, le=1), text="an integer >= 1 (batches) or a "
                                                                                 "fraction in (0, 1]")),
    "trainer.check_val_every_n_epoch": Key(Optional(Int(ge=1))),
    "trainer.log_every_n_steps": Key(Int(ge=1)),
    "trainer.num_sanity_val_steps": Key(Int(ge=-1)),
    "trainer.deterministic": Key(AnyOf(Bool(), Choice("warn"), text="true, false or warn")),
    "trainer.max_time": Key(Optional(Duration()), required=False),
    # checkpoints
    "checkpoint.enabled": Key(Bool()),
    "checkpoint.save_top_k": Key(Int(ge=-1)),
    "checkpoint.save_last": Key(Bool()),
    "checkpoint.every_n_train_steps": Key(Optional(Int(ge=1))),
    "checkpoint.on_interrupt": Key(Bool(), required=False),
    # optimizer
    "optim.lr": Key(Float(gt=0)),
    "optim.weight_decay": Key(Float(ge=0)),
    "optim.betas": Key(ListOf(Float(ge=0, lt=1), length=2)),
    "optim.eps": Key(Float(gt=0)),
    "optim.warmup_ratio": Key(Float(ge=0, le=1)),
    "optim.grad_clip": Key(Float(ge=0)),
    "optim.accumulate_grad_batches": Key(Int(ge=1)),
    "optim.implementation": Key(Choice(*ADAMW_KERNELS), required=False),
    "optim.optimizer": Key(Target()),
    "optim.scheduler": Key(Target()),
    # task
    "task.name": Key(Str()),
    "task.family": Key(Str()),
    "task.loader": Key(Target()),
    "task.kind": Key(Str()),
    "task.metrics": Key(ListOf(Str(), min_length=1)),
    "task.main_metric": Key(Str()),
    "task.eval_splits": Key(ListOf(Str(), min_length=1)),
    "task.data_dir": Key(Optional(Str()), required=False),
    "task.text_keys": Key(ListOf(Str(), min_length=1), when=_classification),
    "task.max_source_length": Key(Optional(Int(ge=1)), required=False, when=_generation),
    "task.generation.num_beams": Key(Int(ge=1), when=_generation),
    "task.generation.max_new_tokens": Key(Int(ge=1), when=_generation),
    "task.generation.max_target_length": Key(Int(ge=1), when=_generation),
    "task.generation.length_penalty": Key(Float(), when=_generation),
    "task.generation.no_repeat_ngram_size": Key(Optional(Int(ge=1)), required=False, when=_generation),
    # backbone
    "backbone.name": Key(Str()),
    "backbone.path": Key(Str()),
    "backbone.kind": Key(Str()),
    "backbone.gradient_checkpointing": Key(Bool(), required=False),  # decoder-only backbones
    # hardware (values that are not Hydra targets)
    "hardware.devices": Key(AnyOf(Int(ge=1), Choice(-1, "auto"), ListOf(Int(ge=0), min_length=1),
                                  Pattern(r"\d+(,\d+)*,?", ""), text="an integer >= 1, -1, auto or a list of device ids")),
    "hardware.num_nodes": Key(Int(ge=1)),
    "hardware.precision": Key(Choice(*PRECISIONS)),
}


def _value(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    """(present, plain value) of a dotted key; interpolations resolved."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent:
        return False, None
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return True, value


def check_schema(cfg: DictConfig, schema: dict[str, Key] = SCHEMA) -> None:
    """Raise :class:`ConfigError` for the first key whose value its rule refuses."""
    for key, spec in schema.items():
        if spec.when is not None and not spec.when(cfg):
            continue
        present, value = _value(cfg, key)
        if not present:
            if spec.required:
                raise ConfigError(f"{key} is missing from the config")
            continue
        found = spec.rule.problem(value)
        if found:
            raise ConfigError(f"{key}={value!r} {found}")


# -- relations between keys -------------------------------------------------------------------------
def _task_kind_is_known(cfg: DictConfig) -> None:
    if cfg.task.kind not in cfg.task_kinds:
        raise ConfigError(f"task.kind={cfg.task.kind!r} is not one of {list(cfg.task_kinds)} (task_kinds)")


def _backbone_fits_task(cfg: DictConfig) -> None:
    fits = list(cfg.task_kinds[cfg.task.kind].backbones)
    if cfg.backbone.kind not in fits:
        examples = "; ".join(f"{k}: {BACKBONE_EXAMPLES.get(k, 'see conf/backbone/')}" for k in fits)
        raise ConfigError(
            f"backbone={cfg.backbone.name} (backbone.kind={cfg.backbone.kind!r}) cannot run task "
            f"{cfg.task.family}/{cfg.task.name} (task.kind={cfg.task.kind!r}): it needs backbone.kind in "
            f"{list(fits)} ({examples})")


def _checkpointing_acts(cfg: DictConfig) -> None:
    if OmegaConf.select(cfg, "backbone.gradient_checkpointing", default=False) and cfg.backbone.kind != "decoder":
        raise ConfigError(f"backbone.gradient_checkpointing=true is implemented for decoder-only backbones "
                          f"(backbone.kind=decoder), not backbone.kind={cfg.backbone.kind!r}")


def _main_metric_is_computed(cfg: DictConfig) -> None:
    from regbench.metrics import metric_name

    names = [metric_name(path) for path in cfg.task.metrics]  # result keys: the functions' names
    if cfg.task.main_metric not in names:
        raise ConfigError(f"task.main_metric={cfg.task.main_metric!r} is not one of the task.metrics names "
                          f"{names} (the function names of {list(cfg.task.metrics)})")


def _training_has_an_end(cfg: DictConfig) -> None:
    if cfg.trainer.max_epochs == -1 and cfg.trainer.max_steps < 0:
        raise ConfigError("trainer.max_epochs=-1 needs trainer.max_steps >= 0 (otherwise training never ends)")


def check_resume(value: str) -> None:
    """``resume`` is ``auto``, ``never`` or a checkpoint on this machine: remote URLs are refused
    (a checkpoint is code-bearing pickle data; only local files, loaded with ``weights_only=True``)."""
    if value in ("auto", "never"):
        return
    if "://" in value or value.startswith(("http:", "https:", "s3:", "gs:")):
        raise ConfigError(f"resume={value!r} must be auto, never or a path to a .ckpt file on this machine: "
                          f"remote checkpoints are not loaded (download it first and check where it comes from)")
    path = Path(value).expanduser()
    if not (path.suffix == ".ckpt" or path.is_dir()):
        raise ConfigError(f"resume={value!r} must be auto, never or a path to a .ckpt file (or a sharded "
                          f"checkpoint folder)")
    if not path.exists():
        raise ConfigError(f"resume={value!r}: no such checkpoint")


def _loaders_are_sharded_by_regbench(cfg: DictConfig) -> None:
    """The datamodule shards every loader across processes itself (length-grouped, resumable mid-epoch)
    and runs the Trainer with ``use_distributed_sampler=False``; Lightning's switch would not act."""
    if "use_distributed_sampler" in (cfg.get("trainer") or {}):
        raise ConfigError(
            f"trainer.use_distributed_sampler={cfg.trainer.use_distributed_sampler!r} cannot be set: regbench's "
            f"datamodule gives each process its own share of the data (data.group_by_length, mid-epoch resume) "
            f"and turns Lightning's sampler replacement off; remove the key (data.group_by_length=false gives "
            f"the plain random order)")


RELATIONS: tuple[Callable[[DictConfig], None], ...] = (
    _task_kind_is_known, _backbone_fits_task, _checkpointing_acts, _main_metric_is_computed, _training_has_an_end,
    _loaders_are_sharded_by_regbench, lambda cfg: check_resume(cfg.resume))


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value (key, value and what is allowed)."""
    check_schema(cfg)
    for relation in RELATIONS:
        relation(cfg)
