"""The regularizer interface and its registry.

A regularizer is one module in this package plus one ``conf/regularizer/<name>.yaml``. The
training loop only talks to the hooks below, so adding a method never touches the loop:

- ``configure_backbone_config(config)``: change the HF config before the model is built
  (dropout rates, attention dropout, ``classifier_dropout`` ...).
- ``apply(model)``: patch the built model (swap modules, register an attention function, wrap it
  with PEFT) and return the model to train (it may be a new wrapper object).
- ``on_train_step(step, total_steps)``: called before every optimizer step, for schedules.
- ``param_groups(model, lr, weight_decay)``: optimizer parameter groups (e.g. a head LR factor).
- ``training_loss(model, batch)``: the loss of one training batch (R-Drop-like methods override).
- ``predict_logits(model, batch)``: logits at validation/prediction (test-time ensembles override).
- ``export(model, output_dir)``: write method-specific artifacts at the end of a run (adapters).
- ``describe()``: a JSON-able summary recorded in ``metrics.json``.

Parameters are validated in ``__init__`` (``RegularizerConfigError`` names the key and range), so
bad values fail before any model or data is loaded.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Callable, ClassVar

REGISTRY: dict[str, type["Regularizer"]] = {}

NO_DECAY_KEYS = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight", "norm.weight")


class RegularizerConfigError(ValueError):
    """A regularizer parameter is out of range or of the wrong kind."""


def register(name: str) -> Callable[[type["Regularizer"]], type["Regularizer"]]:
    """Class decorator: make a regularizer selectable as ``regularizer=<name>``."""

    def wrap(cls: type[Regularizer]) -> type[Regularizer]:
        if name in REGISTRY:
            raise KeyError(f"regularizer {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def check_range(key: str, value: float, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """Validate ``low <= value <= high`` (open ends optional); the error names ``regularizer.<key>``.

    Only real numbers pass: a string, a boolean or NaN is refused (NaN compares false with every
    bound, so a plain range test would let it through).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RegularizerConfigError(f"regularizer.{key} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value):
        raise RegularizerConfigError(f"regularizer.{key}={value} is not a number (NaN)")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise RegularizerConfigError(f"regularizer.{key}={value} is out of range {lo}{low}, {high}{hi}")
    return value


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Validate that ``value`` is one of ``choices``; the error lists them."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise RegularizerConfigError(f"regularizer.{key}={value!r} is not one of {list(choices)}")
    return value


class Regularizer:
    """Base class: the identity regularizer. Subclasses override only the hooks they need."""

    name: ClassVar[str] = "base"

    def configure_backbone_config(self, config: Any) -> None:
        """Mutate the Hugging Face config before the model is instantiated."""

    def apply(self, model: Any) -> Any:
        """Patch the built model in place or wrap it; return the model to train."""
        return model

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Update schedules; ``step`` counts optimizer steps from 0 to ``total_steps``."""

    def param_groups(self, model: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups: no weight decay on biases and norms (BERT recipe)."""
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if any(k in name for k in NO_DECAY_KEYS) else decay).append(param)
        groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
        return groups

    def training_loss(self, model: Any, batch: dict[str, Any]) -> Any:
        """Loss of one training batch; the model computes it from ``labels``."""
        return model(**batch).loss

    def predict_logits(self, model: Any, batch: dict[str, Any]) -> Any:
        """Logits at validation/prediction time (model already in eval mode)."""
        return model(**batch).logits

    def export(self, model: Any, output_dir: str) -> None:
        """Write method-specific artifacts (e.g. PEFT adapters) into the run's output dir."""

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters recorded in ``metrics.json``."""
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"name": self.name, **params}


def build_regularizer(cfg: Any) -> Regularizer:
    """Instantiate the regularizer named by ``cfg.name`` with the remaining keys as parameters."""
    # Importing the package registers every built-in method.
    import regbench.regularizers  # noqa: F401

    params = dict(cfg)
    name = params.pop("name", None)
    if name not in REGISTRY:
        raise RegularizerConfigError(f"unknown regularizer {name!r}; valid: {sorted(REGISTRY)}")
    check_parameter_types(REGISTRY[name], params)
    try:
        return REGISTRY[name](**params)
    except TypeError as err:  # unknown or missing keys
        raise RegularizerConfigError(f"regularizer {name!r}: {err}") from None


def _kinds(annotation: Any) -> tuple[set[type], bool]:
    """The plain types an annotation allows (``float | None`` -> ({float}, True))."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    kinds = {a for a in args if a in (bool, int, float, str)}
    return kinds, type(None) in args


def check_parameter_types(cls: type, params: dict[str, Any]) -> None:
    """Refuse values of the wrong kind for the annotated parameters of ``cls.__init__``.

    Generic, so every method gets it without naming its keys: a ``bool`` parameter takes only
    true/false (the string ``"no"`` would read as true), an ``int`` only integers (``2.5`` would be
    truncated), a ``float`` only finite real numbers (NaN/inf pass no range check). Parameters
    without such annotations are left to the class.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001  (unresolvable annotations: nothing to check generically)
        return
    names = inspect.signature(cls.__init__).parameters
    for key, value in params.items():
        if key not in names or key not in hints:
            continue
        kinds, nullable = _kinds(hints[key])
        if not kinds or (value is None and nullable):
            continue
        if bool in kinds and isinstance(value, bool):
            continue
        if int in kinds and isinstance(value, int) and not isinstance(value, bool):
            continue
        if float in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                continue
            raise RegularizerConfigError(f"regularizer.{key}={value} must be a finite number")
        if str in kinds and isinstance(value, str):
            continue
        wanted = " or ".join(sorted(("true/false" if k is bool else "an integer" if k is int else
                                     "a number" if k is float else "a string") for k in kinds))
        raise RegularizerConfigError(f"regularizer.{key}={value!r} must be {wanted}{' or null' if nullable else ''} "
                                     f"(got {type(value).__name__})")
