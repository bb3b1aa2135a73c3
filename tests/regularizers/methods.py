"""Regularizers as the config builds them: ``conf/regularizer/<name>.yaml`` defaults + overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from regbench.regularizers import Regularizer, RegularizerStack, build_regularizer

CONF = Path(__file__).resolve().parents[2] / "conf" / "regularizer"
METHODS = sorted(path.stem for path in CONF.glob("*.yaml"))


def method_config(name: str, **overrides: Any) -> dict[str, Any]:
    """``{name: {_target_: ..., <params>}}`` as ``regularizer=<name> regularizer.<name>.<k>=<v>`` composes it."""
    node = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))[name]
    return {name: {**node, **overrides}}


def stack(*methods: str | tuple[str, dict[str, Any]], **overrides: Any) -> RegularizerStack:
    """``stack("tlm", ("drophead", {"p": 0.3}))``; keyword overrides apply to a single method."""
    spec: dict[str, Any] = {}
    for entry in methods:
        name, params = (entry, overrides if len(methods) == 1 else {}) if isinstance(entry, str) else entry
        spec.update(method_config(name, **params))
    return build_regularizer(spec)


def method(name: str, **overrides: Any) -> Regularizer:
    """The single method ``regularizer=<name>`` builds (the stack's only member)."""
    return stack(name, **overrides).members[0]


def as_stack(*members: Regularizer) -> RegularizerStack:
    """The loop's view of hand-built methods (training_loss(model, batch), param_groups(model, lr, wd))."""
    return RegularizerStack(list(members))
