"""Several regularizers in one run: build them from the config, refuse impossible combinations, and
call their hooks in a defined order (the contract is in :mod:`regbench.regularizers.base`).

methods.md, "Combining regularizers": config edits, then model patches, apply in the order the user
lists the methods; attention-level methods chain (TLM then DropHead); a loss-level method wraps the
full regularized forward pass; at most one method wraps the model in PEFT; impossible combinations
are refused before any weights load.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterable

from regbench.regularizers.base import (EVALUATION_HOOKS, Regularizer, RegularizerConfigError,
                                        check_parameter_types)

log = logging.getLogger(__name__)


def build_regularizer(cfg: Any) -> "RegularizerStack":
    """The stack of methods selected by ``cfg`` = the composed ``regularizer`` node: a mapping
    ``<name> -> {_target_: <class>, <params>}`` in the order the user listed them."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    methods = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg or {})
    if isinstance(methods.get("name"), str):
        methods = _from_flat_config(methods)
    if not methods:
        raise RegularizerConfigError("no regularizer selected: use regularizer=none for plain fine-tuning, "
                                     "regularizer=<name> or regularizer=[<name>,<name>,...]")
    members = []
    for name, params in methods.items():
        params = dict(params) if isinstance(params, dict) else {}
        target = params.pop("_target_", None)
        if target is None:
            raise RegularizerConfigError(
                f"regularizer.{name} has no _target_ (regularizer parameters are addressed as "
                f"regularizer.<method>.<param>, e.g. regularizer.tlm.keep_rate=0.95)")
        cls = get_class(target)
        params = _rename_deprecated(name, cls, params)
        try:
            check_parameter_types(cls, params)
            member = cls(**params)
        except TypeError as err:  # unknown or missing keys
            raise RegularizerConfigError(f"regularizer {name!r}: {err}") from None
        except RegularizerConfigError as err:  # name the full key: regularizer.<name>.<param>
            raise RegularizerConfigError(str(err).replace("regularizer.", f"regularizer.{name}.", 1)) from None
        member.name = name
        members.append(member)
    return RegularizerStack(members)


def _from_flat_config(flat: dict[str, Any]) -> dict[str, Any]:
    """``{name: tlm, keep_rate: 0.9}``, the shape run dirs had before methods were nested (read for one
    release, e.g. to export or predict with an older run): the method's ``_target_`` from its conf file."""
    import yaml

    from regbench.app import CONF_DIR

    params = dict(flat)
    name = params.pop("name")
    option = CONF_DIR / "regularizer" / f"{name}.yaml"
    if not option.is_file():
        raise RegularizerConfigError(f"regularizer name={name!r} (a run config of the former flat shape) is not an "
                                     f"option of {option.parent}")
    message = (f"regularizer config of the former flat shape (name: {name}); today: regularizer.{name}.<param>, "
               "read for one more release")
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    log.warning(message)
    target = yaml.safe_load(option.read_text())[name]["_target_"]
    return {name: {"_target_": target, **params}}


def _rename_deprecated(name: str, cls: type[Regularizer], params: dict[str, Any]) -> dict[str, Any]:
    """Accept former parameter names for one release, with a warning naming old -> new."""
    for old, new in cls.renamed_parameters.items():
        if old in params:
            message = (f"regularizer.{name}.{old} is deprecated and will be removed in the next release: "
                       f"use regularizer.{name}.{new}")
            warnings.warn(message, DeprecationWarning, stacklevel=3)
            log.warning(message)
            params[new] = params.pop(old)
    return params


def check_combination(members: list[Regularizer]) -> None:
    """Refuse combinations that cannot work, with the reason and the way out."""
    names = [m.name for m in members]
    if not members:
        raise RegularizerConfigError("no regularizer selected (regularizer=none for plain fine-tuning)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RegularizerConfigError(f"regularizer {repeated[0]!r} is listed twice in {names}")
    if len(members) > 1 and "none" in names:
        raise RegularizerConfigError(f"'none' cannot be combined with other methods ({names}); drop it")
    _at_most_one(names, [m.name for m in members if m.wraps_model],
                 "wrap the model in PEFT (one adapter setup per run)")
    _at_most_one(names, [m.name for m in members if m.owns_training_loss()],
                 "compute the training loss from several forward passes")
    _at_most_one(names, [m.name for m in members if m.owns_evaluation()], "replace evaluation (test-time ensemble)")
    full = [m.name for m in members if m.trains_full_model]
    peft = [m.name for m in members if m.wraps_model]
    if full and peft:
        raise RegularizerConfigError(
            f"regularizer {full[0]} acts on the pretrained weights, which {peft[0]} freezes behind PEFT adapters;"
            f" they cannot be combined")
    written: dict[str, tuple[str, float]] = {}
    for member in members:
        for setting, value in member.backbone_settings().items():
            if setting in written and written[setting][1] != value:
                other, other_value = written[setting]
                raise RegularizerConfigError(
                    f"regularizer {other} sets the backbone's {setting} to {other_value} and {member.name} sets it to"
                    f" {value}: only one value can act. Change one of them (e.g. their parameter that sets"
                    f" {setting}) so they agree")
            written.setdefault(setting, (member.name, value))
    needy = [m.name for m in members if m.requires_dropout]
    zeroed = [written[k][0] for k in ("hidden_dropout", "attention_dropout") if k in written and written[k][1] == 0.0]
    if needy and len(zeroed) == 2:
        raise RegularizerConfigError(
            f"regularizer={names}: {needy[0]} needs dropout on (it compares passes with independent dropout masks), "
            f"but {' and '.join(dict.fromkeys(zeroed))} set the backbone's hidden and attention dropout to 0")


def _at_most_one(names: list[str], owners: list[str], role: str) -> None:
    if len(owners) > 1:
        raise RegularizerConfigError(f"regularizer={names}: {' and '.join(owners)} both {role}; at most one method may")


def unhonoured_needs(needs: Iterable[str], honours: Iterable[str]) -> set[str]:
    """What a method needs that a task kind does not honour; evaluation hooks are alternatives (the
    task kind calls one of them)."""
    needs, honours = set(needs), set(honours)
    missing = needs - honours - EVALUATION_HOOKS
    evaluation = needs & EVALUATION_HOOKS
    if evaluation and not evaluation & honours:
        missing |= evaluation
    return missing


class RegularizerStack:
    """The methods of one run, called by the training loop in the order they were listed."""

    def __init__(self, members: list[Regularizer]) -> None:
        check_combination(members)
        self.members = list(members)

    @property
    def name(self) -> str:
        """``tlm``, or the combination in order: ``mixout+wdecay``."""
        return "+".join(m.name for m in self.members)

    def leaves_parameters_unused(self) -> bool:
        """True when a member leaves some parameters without a gradient in a step (DDP must allow it)."""
        return any(m.leaves_parameters_unused for m in self.members)

    def _owner(self, test: Callable[[Regularizer], bool]) -> Regularizer | None:
        return next((m for m in self.members if test(m)), None)

    def check_task(self, module_cls: type, task_kind: str) -> None:
        """Refuse, before weights load, a method needing a hook or feature the task kind does not honour."""
        honours = getattr(module_cls, "honours", frozenset())
        for member in self.members:
            missing = unhonoured_needs(member.needs(), honours)
            if missing:
                raise RegularizerConfigError(
                    f"regularizer {member.name} ({member.describe()}) acts through {sorted(missing)}, which task.kind="
                    f"{task_kind!r} ({module_cls.__name__}) does not honour; it would be a silent no-op. Honoured: "
                    f"{sorted(honours)}")

    # -- hooks in the loop's order ---------------------------------------------------------------------
    def configure_backbone_config(self, config: Any) -> None:
        for member in self.members:
            member.configure_backbone_config(config)

    def apply(self, model: Any) -> Any:
        for member in self.members:
            model = member.apply(model)
        return model

    def on_train_step(self, step: int, total_steps: int) -> None:
        for member in self.members:
            member.on_train_step(step, total_steps)

    def training_loss(self, model: Any, batch: dict[str, Any]) -> Any:
        """The step's loss: the owner's loss over fully wrapped passes, plus every member's penalty."""

        def forward(inputs: dict[str, Any]) -> Any:
            return model(**inputs)

        for member in reversed(self.members):  # the first listed ends up outermost
            forward = member.wrap_forward(forward)
        owner = self._owner(Regularizer.owns_training_loss) or Regularizer()
        loss = owner.training_loss(forward, batch)
        for member in self.members:
            term = member.penalty(model)
            if term is not None:
                loss = loss + term
        return loss

    def before_optimizer_step(self, model: Any, optimizer: Any) -> None:
        for member in self.members:
            member.before_optimizer_step(model, optimizer)

    def param_groups(self, model: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The optimizer recipe's groups (no decay on biases and norms), refined by every member."""
        from regbench.models.structure import decay_groups

        groups = decay_groups(model, lr, weight_decay)
        for member in self.members:
            groups = member.param_groups(model, groups)
        return groups

    def predict_logits(self, model: Any, batch: dict[str, Any]) -> Any:
        return (self._owner(Regularizer.owns_evaluation) or Regularizer()).predict_logits(model, batch)

    def generate(self, model: Any, **inputs: Any) -> Any:
        return (self._owner(Regularizer.owns_evaluation) or Regularizer()).generate(model, **inputs)

    def export(self, model: Any, output_dir: str) -> None:
        for member in self.members:
            member.export(model, output_dir)

    def describe(self) -> dict[str, Any]:
        """``{"name": "mixout+wdecay", "methods": {"mixout": {...}, "wdecay": {...}}}`` (JSON-able)."""
        return {"name": self.name, "methods": {m.name: m.describe() for m in self.members}}
