"""Behaviour every regularizer shares: Hydra config files, eval == unregularized, gradients, learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from regbench.regularizers import REGISTRY, RegularizerConfigError, build_regularizer
from regbench.regularizers.backbone_config import UnsupportedBackboneError
from tests.regularizers.backbones import BACKBONES, CLASSIFIERS, SEQ2SEQ, make_batch

CONF = Path(__file__).resolve().parents[2] / "conf" / "regularizer"
METHODS = ["dropout", "attention_dropout", "drophead", "tlm", "very_large_dropout"]
# Methods that act on any backbone; very_large_dropout needs a classification head.
ANY_BACKBONE = ["dropout", "attention_dropout", "drophead", "tlm"]


def default_regularizer(name: str, **overrides: object):
    """The regularizer as ``regularizer=<name>`` builds it, with optional overrides."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    return build_regularizer({**OmegaConf.to_container(cfg), **overrides})


def test_every_registered_method_has_a_config_file_and_builds_from_it() -> None:
    for name in METHODS + ["none"]:
        assert name in REGISTRY
        assert (CONF / f"{name}.yaml").exists()
        regularizer = default_regularizer(name)
        assert regularizer.describe()["name"] == name
    for path in CONF.glob("*.yaml"):
        assert OmegaConf.load(path).name == path.stem
        assert "#" in path.read_text()  # parameters carry their ranges as comments


def test_unknown_parameter_is_a_config_error() -> None:
    with pytest.raises(RegularizerConfigError, match="tlm"):
        build_regularizer({"name": "tlm", "keep": 0.9})


CASES = [(method, backbone) for method in ANY_BACKBONE for backbone in BACKBONES] + [
    ("very_large_dropout", backbone) for backbone in CLASSIFIERS]


@pytest.mark.parametrize("method, backbone", CASES)
def test_eval_mode_is_exactly_the_unregularized_model(method, backbone, load_backbone) -> None:
    batch = make_batch(backbone)
    plain = load_backbone(backbone).eval()
    regularizer = default_regularizer(method, **({"p": 0.5} if method == "drophead" else {}))
    model = load_backbone(backbone, regularizer)
    model.train()
    torch.manual_seed(0)
    train_logits = model(**batch).logits
    model.eval()
    with torch.no_grad():
        expected, got = plain(**batch).logits, model(**batch).logits
    assert torch.equal(expected, got)
    assert not torch.equal(train_logits.detach(), got), "the regularizer changed nothing in training"


def test_very_large_dropout_refuses_models_without_a_classification_head(load_backbone) -> None:
    for backbone in SEQ2SEQ:
        with pytest.raises(UnsupportedBackboneError, match="classif"):
            load_backbone(backbone, default_regularizer("very_large_dropout"))


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_every_parameter_the_plain_model_trains(method, load_backbone) -> None:
    batch = make_batch("bert")
    plain = load_backbone("bert").train()
    plain(**batch).loss.backward()
    regularizer = default_regularizer(method)
    model = load_backbone("bert", regularizer).train()
    torch.manual_seed(0)
    regularizer.training_loss(model, batch).backward()
    for (name, p_plain), (_, p_reg) in zip(plain.named_parameters(), model.named_parameters()):
        if p_plain.grad is not None and p_plain.grad.abs().sum() > 0:
            assert p_reg.grad is not None and torch.isfinite(p_reg.grad).all(), name
            assert p_reg.grad.abs().sum() > 0, name


def _train(regularizer, model, batch, steps: int, lr: float) -> None:
    """A plain torch loop calling the hooks in the training loop's order."""
    optimizer = torch.optim.AdamW(regularizer.param_groups(model, lr, 0.01))
    model.train()
    for step in range(steps):
        regularizer.on_train_step(step, steps)
        loss = regularizer.training_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _eval_loss(regularizer, model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


@pytest.mark.parametrize("method, backbone", [(m, "bert") for m in METHODS] + [("tlm", "bart"), ("drophead", "t5"),
                                                                                ("tlm", "bert2bert")])
def test_short_training_run_reduces_the_loss(method, backbone, load_backbone) -> None:
    torch.manual_seed(0)
    overrides = {"schedule": "v_shaped", "p_start": 0.3, "p_end": 0.2} if method == "drophead" else {}
    regularizer = default_regularizer(method, **overrides)
    model = load_backbone(backbone, regularizer)
    batch = make_batch(backbone, batch=4, length=8)
    before = _eval_loss(regularizer, model, batch)
    _train(regularizer, model, batch, steps=12, lr=5e-3)
    after = _eval_loss(regularizer, model, batch)
    assert after < 0.8 * before, (before, after)
