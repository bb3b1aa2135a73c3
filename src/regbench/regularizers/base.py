"""The regularizer interface: the hooks the training loop calls, what a method declares about itself,
and the contract that lets several methods act in one run (``regularizer=[mixout,wdecay]``).

Config. ``conf/regularizer/<name>.yaml`` holds one mapping ``<name>: {_target_: <class>, <params>}``,
named after the module ``regbench/regularizers/<name>.py`` that defines the class (Hydra's "select
multiple configs from a config group" pattern). ``regularizer=tlm`` and ``regularizer=[mixout,wdecay]``
both compose to ``regularizer: {<name>: {...}, ...}`` in the order listed, every parameter addressable
as ``regularizer.<name>.<param>``; :func:`regbench.regularizers.composition.build_regularizer` turns the
mapping into one :class:`~regbench.regularizers.composition.RegularizerStack`, the only object the
loop talks to. Adding a method is one module + one YAML: no registry, no loop edit.

Parameters are validated in ``__init__`` (``RegularizerConfigError`` names the key and the range) and
combinations are checked when the stack is built, so bad values and impossible combinations fail
before any model or data is loaded. A drop probability is called ``p`` in every method (``keep_rate``
only where the paper's parameter is a keep probability: TLM); former names are listed in
``renamed_parameters`` and accepted with a ``DeprecationWarning`` for one release.

Hooks (all optional: the base class is the identity), in the order the loop calls them. With several
methods, each hook runs for every member in the order listed, except where marked *owner* (at most one
member may act through it; the others keep the default):

- ``configure_backbone_config(config)``: edit the Hugging Face config before the model is built.
  Which dropout settings it writes is declared by ``backbone_settings()``; two members writing one
  setting with different values are refused.
- ``apply(model) -> model``: patch the built model (swap modules, attention hooks, parametrizations) or
  wrap it (``wraps_model = True``: PEFT; at most one such member). Later members see earlier patches.
- ``on_train_step(step, total_steps)``: before every optimizer step (schedules).
- ``wrap_forward(forward) -> forward``: behaviour around ONE forward pass (``forward(batch)`` returns
  the model outputs: ``.loss``, ``.logits``): a context such as Mixout's one-mask-per-pass cache, or a
  check after the pass. Members wrap in order, the first listed outermost.
- ``training_loss(forward, batch) -> loss`` (*owner*): the loss of a batch from one or more calls of
  ``forward``, which is the fully wrapped pass, so every other member acts in each pass (fresh masks,
  attention hooks). Default ``forward(batch).loss``. R-Drop: two calls + task loss on both + α × the
  symmetric KL of their output distributions; LoRA Dropout with ``train_samples=N``: mean of N calls.
- ``penalty(model) -> Tensor | None``: a term added once to the step's loss, after the owner's loss
  (L2-SP / wdecay toward a target in the penalty form ``λ/2·||w − u||²``).
- ``before_optimizer_step(model, optimizer)``: after backward (accumulated gradients, not yet clipped:
  Lightning's ``on_before_optimizer_step``), before the optimizer updates; decoupled updates act here (wdecay's ``w ← w − lr·λ·(w − u)`` with each group's
  ``lr``, in AdamW's order: decay from the pre-step weights).
- ``param_groups(model, groups) -> groups``: refine the optimizer's parameter groups (split a group,
  scale its ``lr``); the base groups are the optimizer recipe's (no decay on biases and norms).
- ``predict_logits(model, batch)`` (*owner*): logits at classification/regression evaluation.
- ``generate(model, **inputs)`` (*owner*, same member as ``predict_logits``): token ids at generation
  evaluation. A method that acts at evaluation (a test-time ensemble) implements the evaluation hook
  of each task kind it supports.
- ``export(model, output_dir)``: method artifacts at the end of a run (adapters); ``describe()``: the
  JSON-able parameters recorded in ``metrics.json``.

For the next methods (the contract they implement, no loop edit):

- R-Drop (Liang et al. 2021) overrides ``training_loss(forward, batch)``: ``o1, o2 = forward(batch),
  forward(batch)`` (each a full regularized pass: dropout, TLM/DropHead masks, Mixout masks drawn
  afresh), task loss on both (sum or mean) + α × symmetric KL of the two output distributions
  (seq2seq: token-level over non-padding target positions); it is then the loss owner, so it cannot
  be combined with another owner (LoRA Dropout with ``train_passes > 1``).
- wdecay toward ``u`` (0 or the pretrained weights, captured in ``apply``) implements either
  ``penalty(model) -> λ/2 · Σ||w − u||²`` (the penalty form: added once per step, outside R-Drop's
  passes) or ``before_optimizer_step(model, optimizer)`` (the decoupled form, reading each group's
  ``lr``); if it also sets the optimizer's own weight decay, it says so through ``param_groups``.
- LayerDrop finds the blocks of every stack with :func:`regbench.models.structure.blocks`. It sets
  ``leaves_parameters_unused``: a skipped block's parameters get no gradient, so the run turns on DDP's
  ``find_unused_parameters`` (or refuses a strategy that cannot allow it) before any weights load
  (:func:`regbench.hardware.allow_unused_parameters`).

Capabilities. Every LightningModule declares the hooks it honours (``FineTuneModule.honours``); a
method whose active hooks (:meth:`Regularizer.needs`, by default the hooks its class overrides plus
``requires``) are not all honoured by the task kind is refused at start-up, before weights load:
a hook a task kind does not call is an error, never a silent no-op. ``train_only`` (eval is exactly
the unregularized model) and ``requires`` (e.g. a classification head) drive the contract tests.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Callable, ClassVar

HOOKS = ("configure_backbone_config", "apply", "on_train_step", "wrap_forward", "training_loss", "penalty",
         "before_optimizer_step", "param_groups", "predict_logits", "generate", "export")
# A task kind evaluates through one of these; a method acting at evaluation implements the one it calls.
EVALUATION_HOOKS = frozenset({"predict_logits", "generate"})
# Model features a method may require and a task kind's model may provide.
FEATURES = ("classification_head",)


class RegularizerConfigError(ValueError):
    """A regularizer parameter is out of range or of the wrong kind, or methods cannot be combined."""


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
    if too_low or too_high or not math.isfinite(value):
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise RegularizerConfigError(f"regularizer.{key}={value} is out of range {lo}{low}, {high}{hi}")
    return value


def check_integer(key: str, value: Any, low: int) -> int:
    """Validate an integer ``>= low`` (bools and fractional numbers refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise RegularizerConfigError(f"regularizer.{key}={value!r} must be an integer in [{low}, inf)")
    return int(check_range(key, value, low, float("inf"), high_open=True))


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Validate that ``value`` is one of ``choices``; the error lists them."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise RegularizerConfigError(f"regularizer.{key}={value!r} is not one of {list(choices)}")
    return value


class Regularizer:
    """Base class: the identity regularizer. Subclasses override only the hooks they need."""

    # -- declarations (read by the composition checks and the contract tests) ----------------------
    wraps_model: ClassVar[bool] = False  # apply() returns a PEFT wrapper (at most one member)
    trains_full_model: ClassVar[bool] = False  # acts on the pretrained weights themselves (not with PEFT)
    train_only: ClassVar[bool] = True  # eval mode gives exactly the unregularized network
    requires: ClassVar[frozenset[str]] = frozenset()  # model features (FEATURES) it needs
    renamed_parameters: ClassVar[dict[str, str]] = {}  # former parameter name -> current name
    leaves_parameters_unused: ClassVar[bool] = False  # some parameters get no gradient in a step (LayerDrop)
    requires_dropout: ClassVar[bool] = False  # acts through the backbone's dropout (R-Drop): refused if all set to 0

    @property
    def name(self) -> str:
        """The option name: the module ``regbench.regularizers.<name>`` (= ``conf/regularizer/<name>.yaml``)."""
        return self.__dict__.get("_name") or type(self).__module__.rsplit(".", 1)[-1]

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_name"] = value

    def needs(self) -> frozenset[str]:
        """Hooks the method acts through with its current parameters, plus the features it requires.

        Default: every hook its class overrides. Subclasses narrow it where a parameter turns a hook
        off (e.g. LoRA Dropout's ensemble with one pass)."""
        hooks = {h for h in HOOKS if getattr(type(self), h) is not getattr(Regularizer, h)}
        return frozenset(hooks) | self.requires

    def owns_training_loss(self) -> bool:
        """True when the method computes the step's loss itself (several passes); at most one member."""
        return "training_loss" in self.needs()

    def owns_evaluation(self) -> bool:
        """True when the method changes evaluation (a test-time ensemble); at most one member."""
        return bool(self.needs() & EVALUATION_HOOKS)

    def backbone_settings(self) -> dict[str, float]:
        """Backbone dropout settings that ``configure_backbone_config``/``apply`` write, by kind
        (``hidden_dropout``, ``attention_dropout``, ``classifier_dropout``) -> value."""
        return {}

    # -- hooks -------------------------------------------------------------------------------------
    def configure_backbone_config(self, config: Any) -> None:
        """Mutate the Hugging Face config before the model is instantiated."""

    def apply(self, model: Any) -> Any:
        """Patch the built model in place or wrap it; return the model to train."""
        return model

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Update schedules; ``step`` counts optimizer steps from 0 to ``total_steps``."""

    def wrap_forward(self, forward: Callable[[dict], Any]) -> Callable[[dict], Any]:
        """Wrap one training forward pass ``forward(batch) -> outputs``."""
        return forward

    def training_loss(self, forward: Callable[[dict], Any], batch: dict[str, Any]) -> Any:
        """Loss of one training batch from the (wrapped) forward pass; the model computes it from ``labels``."""
        return forward(batch).loss

    def penalty(self, model: Any) -> Any:
        """A term added once to the step's loss, or None."""
        return None

    def before_optimizer_step(self, model: Any, optimizer: Any) -> None:
        """Act on the weights after backward, before the optimizer step (decoupled updates)."""

    def param_groups(self, model: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Refine the optimizer's parameter groups (each has ``params``, ``lr``, ``weight_decay``)."""
        return groups

    def predict_logits(self, model: Any, batch: dict[str, Any]) -> Any:
        """Logits at validation/prediction time (model already in eval mode)."""
        return model(**batch).logits

    def generate(self, model: Any, **inputs: Any) -> Any:
        """Generated token ids at evaluation (model already in eval mode)."""
        return model.generate(**inputs)

    def export(self, model: Any, output_dir: str) -> None:
        """Write method-specific artifacts (e.g. PEFT adapters) into the run's output dir."""

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters recorded in ``metrics.json``."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


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
