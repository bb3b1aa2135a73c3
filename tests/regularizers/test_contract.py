"""The contract every regularizer meets, run over every option of ``conf/regularizer/`` (one matrix with
a per-method capability table, the way PEFT's tests/test_custom_models.py runs every method): its
config file, parameter validation, eval == the unregularized model where it is train-only, evidence
that it acts in a training step, gradients, learning, and what it needs from a task kind."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from unittest import mock

import pytest
import torch
from omegaconf import OmegaConf

from regbench.models.structure import classification_head
from regbench.regularizers import RegularizerConfigError, build_regularizer
from regbench.regularizers.attention_hooks import held_configs
from regbench.regularizers.backbone_config import ATTENTION_DROPOUT_KEYS, HIDDEN_DROPOUT_KEYS
from tests.regularizers.backbones import BACKBONES, CLASSIFIERS, SEQ2SEQ, make_batch
from tests.regularizers.methods import CONF, METHODS, method, method_config, stack

Probe = Callable[[Any, Any], contextlib.AbstractContextManager]


# -- probes: evidence that a method acted in the training step run inside the context ---------------
# Blocks left out of the step on purpose (LayerDrop in a composition sets it): probes ask for evidence
# only from the blocks that ran.
def SKIPPED() -> list[str]:  # noqa: N802  (replaced by tests that compose with LayerDrop)
    return []


def _skipped(name: str) -> bool:
    name = name.removeprefix("base_model.model.")
    return any(name.startswith(f"{path.removeprefix('base_model.model.')}.") for path in SKIPPED())


def _config_probe(keys: tuple[str, ...], module_attr: str | None = None) -> Probe:
    @contextlib.contextmanager
    def probe(member: Any, model: Any) -> Iterator[None]:
        yield
        values = {float(getattr(c, k)) for c in held_configs(model) for k in keys if isinstance(getattr(c, k, None), float)}
        if module_attr:  # T5: the attention modules' own float rate
            values |= {m.dropout for m in model.modules() if type(m).__name__ == module_attr}
        assert member.p in values, f"{member.name}: no backbone dropout setting is {member.p} ({values})"

    return probe


def _spy_probe(module_name: str, function: str) -> Probe:
    """The method's per-layer function ran once per claimed attention layer."""

    @contextlib.contextmanager
    def probe(member: Any, model: Any) -> Iterator[None]:
        import importlib

        module = importlib.import_module(module_name)
        with mock.patch.object(module, function, wraps=getattr(module, function)) as spy:
            yield
        expected = [path for path in member._claimed.values() if not _skipped(path)]
        assert len(member._claimed) > 0 and spy.call_count >= len(expected), f"{member.name}: {function} ran {spy.call_count} times"

    return probe


@contextlib.contextmanager
def _mixout_probe(member: Any, model: Any) -> Iterator[None]:
    from regbench.regularizers.mixout import MixoutParametrization

    mixes = [m for n, m in model.named_modules() if isinstance(m, MixoutParametrization) and not _skipped(n)]
    for mix in mixes:
        mix.last_mask = None
    yield
    assert mixes and all(mix.last_mask is not None for mix in mixes), "mixout: a Linear was not mixed"


@contextlib.contextmanager
def _final_linear_probe(member: Any, model: Any) -> Iterator[None]:
    seen: list[torch.Tensor] = []
    handle = classification_head(model).final.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    yield
    handle.remove()
    assert seen and (seen[-1] == 0).float().mean() > 0.5, "very_large_dropout: the head's input was not dropped"


@contextlib.contextmanager
def _lora_probe(member: Any, model: Any) -> Iterator[None]:
    yield
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n and not _skipped(n)]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), "lora: adapters got no gradient"


@contextlib.contextmanager
def _factor_mask_probe(member: Any, model: Any) -> Iterator[None]:
    from regbench.regularizers.lora_dropout import factor_masks

    names = {id(m): n for n, m in model.named_modules()}
    masks = [entry for entry in factor_masks(model) if not _skipped(names[id(entry[0])])]
    yield
    assert masks and all(a.last_mask is not None and b.last_mask is not None for _, a, b in masks)


@contextlib.contextmanager
def _penalty_probe(member: Any, model: Any) -> Iterator[None]:
    terms: list[Any] = []
    original = member.penalty
    with mock.patch.object(member, "penalty", side_effect=lambda m: terms.append(original(m)) or terms[-1]):
        yield
    assert len(terms) == 1, f"{member.name}: penalty ran {len(terms)} times (once per step)"
    term = terms[0]
    assert term is not None and term.requires_grad and float(term) > 0, f"{member.name}: penalty {term}"


@contextlib.contextmanager
def _consistency_probe(member: Any, model: Any) -> Iterator[None]:
    from regbench.regularizers import rdrop

    terms: list[torch.Tensor] = []
    original = rdrop.consistency
    with mock.patch.object(rdrop, "consistency", side_effect=lambda *a: terms.append(original(*a)) or terms[-1]):
        yield
    assert len(terms) == 1 and float(terms[0]) > 0 and terms[0].requires_grad, f"rdrop: consistency term {terms}"


@contextlib.contextmanager
def _skip_probe(member: Any, model: Any) -> Iterator[None]:
    ran: set[str] = set()  # blocks whose Linear layers computed (the block's own call runs even when skipped)
    handles = [linear.register_forward_hook(lambda m, a, o, path=b.path: ran.add(path))
               for b in member._blocks for linear in b.module.modules() if isinstance(linear, torch.nn.Linear)]
    yield
    for handle in handles:
        handle.remove()
    assert member.last_skipped, "layerdrop: no block was skipped"
    assert ran == {b.path for b in member._blocks} - set(member.last_skipped), "layerdrop: a skipped block ran"


@dataclass(frozen=True)
class Capability:
    """What the matrix needs to know per method besides its class's own declarations."""

    strong: dict[str, Any] = field(default_factory=dict)  # parameters that make it act visibly in one step
    probe: Probe | None = None  # None: acts on nothing (``none``)


CAPABILITIES: dict[str, Capability] = {
    "none": Capability(),
    "dropout": Capability({"p": 0.3}, _config_probe(HIDDEN_DROPOUT_KEYS)),
    "attention_dropout": Capability({"p": 0.3}, _config_probe(ATTENTION_DROPOUT_KEYS, "T5Attention")),
    "drophead": Capability({"p": 0.5}, _spy_probe("regbench.regularizers.drophead", "drophead_scale")),
    "tlm": Capability({"keep_rate": 0.5}, _spy_probe("regbench.regularizers.tlm", "tlm_attention_mask")),
    "mixout": Capability({"p": 0.5}, _mixout_probe),
    "very_large_dropout": Capability({"p": 0.9}, _final_linear_probe),
    "lora": Capability({"r": 4}, _lora_probe),
    "lora_dropout": Capability({"r": 4, "p": 0.5}, _factor_mask_probe),
    "layerdrop": Capability({"p": 0.9}, _skip_probe),
    "rdrop": Capability({"alpha": 1.0}, _consistency_probe),
    "wdecay": Capability({"strength": 1.0, "target": "zero", "form": "penalty"}, _penalty_probe),
}


def backbones_for(name: str) -> list[str]:
    """The tiny backbones a method supports, from what its class requires."""
    return CLASSIFIERS if "classification_head" in method(name).requires else list(BACKBONES)


# One encoder, one seq2seq family and the composite (stale-config) case; classifiers for head methods.
REPRESENTATIVE = ("bert", "bart", "bert2bert", "bart_cls")


def _step(regularizer: Any, model: Any, batch: dict) -> torch.Tensor:
    model.train()
    loss = regularizer.training_loss(model, batch)
    loss.backward()
    return loss


# -- the matrix -------------------------------------------------------------------------------------
def test_every_option_file_has_a_capability_row_and_the_shape_the_loader_expects() -> None:
    assert set(METHODS) == set(CAPABILITIES), "a new conf/regularizer/*.yaml needs a row in CAPABILITIES"
    for name in METHODS:
        raw = OmegaConf.load(CONF / f"{name}.yaml")
        assert list(raw) == [name], f"{name}.yaml must hold one mapping named {name!r}"
        target = raw[name]["_target_"]
        assert target.startswith(f"regbench.regularizers.{name}."), f"{name}: the class lives in regularizers/{name}.py"
        assert "#" in (CONF / f"{name}.yaml").read_text()  # parameters carry their ranges as comments
        assert method(name).name == name and stack(name).describe()["methods"][name]["name"] == name


@pytest.mark.parametrize("name", METHODS)
def test_unknown_parameter_is_a_config_error_naming_the_method(name) -> None:
    with pytest.raises(RegularizerConfigError, match=f"regularizer '{name}'"):
        stack(name, no_such_parameter=1)


@pytest.mark.parametrize("name", METHODS)
def test_non_finite_numbers_are_refused(name) -> None:
    numeric = [k for k, v in method_config(name)[name].items() if isinstance(v, float) and not isinstance(v, bool)]
    for key in numeric:
        for bad in (math.nan, math.inf):
            with pytest.raises(RegularizerConfigError, match=f"regularizer.{name}.{key}"):
                stack(name, **{key: bad})


@pytest.mark.parametrize("name", [n for n in METHODS if method(n).renamed_parameters])
def test_former_parameter_names_are_accepted_with_a_deprecation_warning(name) -> None:
    for old, new in method(name).renamed_parameters.items():
        with pytest.warns(DeprecationWarning, match=f"regularizer.{name}.{old} .* regularizer.{name}.{new}"):
            member = stack(name, **{old: 0.25}).members[0]
        assert getattr(member, new) == 0.25


@pytest.mark.parametrize("name, backbone", [(n, b) for n in METHODS if method(n).train_only for b in backbones_for(n)])
def test_eval_mode_is_exactly_the_unregularized_model(name, backbone, load_backbone) -> None:
    batch = make_batch(backbone)
    plain = load_backbone(backbone).eval()
    regularizer = stack(name, **CAPABILITIES[name].strong)
    model = load_backbone(backbone, regularizer)
    torch.manual_seed(0)
    train_logits = model.train()(**batch).logits
    model.eval()
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, model(**batch).logits)
    if name not in ("none", "mixout"):  # mixout's w_mix = u + 0 before training moves w (its probe shows it acts)
        assert not torch.equal(train_logits.detach(), model(**batch).logits), "the method changed nothing in training"


@pytest.mark.parametrize("name, backbone", [(n, b) for n in METHODS if CAPABILITIES[n].probe
                                            for b in backbones_for(n) if b in REPRESENTATIVE])
def test_the_method_acts_in_a_training_step(name, backbone, load_backbone) -> None:
    regularizer = stack(name, **CAPABILITIES[name].strong)
    model = load_backbone(backbone, regularizer)
    member = regularizer.members[0]
    torch.manual_seed(0)
    with CAPABILITIES[name].probe(member, model):
        assert torch.isfinite(_step(regularizer, model, make_batch(backbone)))


@pytest.mark.parametrize("name", [n for n in METHODS if "classification_head" in method(n).requires])
def test_methods_needing_a_classification_head_refuse_other_models(name, load_backbone) -> None:
    from regbench.models.structure import UnsupportedBackboneError

    for backbone in SEQ2SEQ:
        with pytest.raises(UnsupportedBackboneError, match="classif"):
            load_backbone(backbone, stack(name))


@pytest.mark.parametrize("name", METHODS)
def test_gradients_reach_every_parameter_the_plain_model_trains(name, load_backbone) -> None:
    batch = make_batch("bert")
    plain = load_backbone("bert").train()
    plain(**batch).loss.backward()
    regularizer = stack(name)
    model = load_backbone("bert", regularizer)
    torch.manual_seed(0)
    _step(regularizer, model, batch)
    trained = {n.removeprefix("base_model.model.").replace(".base_layer", "").replace(".original_module", ""): p
               for n, p in model.named_parameters() if p.requires_grad}
    skipped = tuple(f"{path}." for path in getattr(regularizer.members[0], "last_skipped", []))  # LayerDrop
    trained = {n: p for n, p in trained.items() if not n.startswith(skipped) or not skipped}
    for param_name, p_plain in plain.named_parameters():
        if param_name in trained and p_plain.grad is not None and p_plain.grad.abs().sum() > 0:
            grad = trained[param_name].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, param_name
    assert all(p.grad is not None for p in trained.values()), "a trainable parameter got no gradient"


def _train(regularizer, model, batch, steps: int, lr: float) -> None:
    """A plain torch loop calling the hooks in the training loop's order."""
    optimizer = torch.optim.AdamW(regularizer.param_groups(model, lr, 0.01))
    model.train()
    for step in range(steps):
        regularizer.on_train_step(step, steps)
        loss = regularizer.training_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        regularizer.before_optimizer_step(model, optimizer)
        optimizer.step()


def _eval_loss(regularizer, model, batch) -> float:
    model.eval()
    with torch.no_grad():
        logits = regularizer.predict_logits(model, {k: v for k, v in batch.items() if k != "labels"})
    return float(torch.nn.functional.cross_entropy(logits, batch["labels"]))


@pytest.mark.parametrize("name, backbone", [(m, "bert") for m in METHODS] + [("tlm", "bart_cls"), ("drophead", "t5_cls")])
def test_short_training_run_reduces_the_loss(name, backbone, load_backbone) -> None:
    torch.manual_seed(0)
    overrides = {"schedule": "v_shaped", "p_start": 0.3, "p_end": 0.2} if name == "drophead" else {}
    regularizer = stack(name, **overrides)
    model = load_backbone(backbone, regularizer)
    batch = make_batch(backbone, batch=4, length=8)
    before = _eval_loss(regularizer, model, batch)
    _train(regularizer, model, batch, steps=12, lr=5e-3 if not method(name).wraps_model else 2e-2)
    assert _eval_loss(regularizer, model, batch) < 0.8 * before


@pytest.mark.parametrize("name", METHODS)
def test_what_a_method_needs_is_honoured_by_the_task_kinds_it_supports(name) -> None:
    """Its hooks and features against each LightningModule's declaration (the start-up check)."""
    from regbench.models.classification import SequenceClassificationModule
    from regbench.models.seq2seq import Seq2SeqModule

    regularizer = stack(name, **CAPABILITIES[name].strong)
    regularizer.check_task(SequenceClassificationModule, "classification")
    if "classification_head" in method(name).requires:
        with pytest.raises(RegularizerConfigError, match="classification_head.*does not honour"):
            regularizer.check_task(Seq2SeqModule, "generation")
    else:
        regularizer.check_task(Seq2SeqModule, "generation")


def test_build_refuses_an_empty_selection_and_a_node_without_target() -> None:
    with pytest.raises(RegularizerConfigError, match="regularizer=none"):
        build_regularizer({})
    with pytest.raises(RegularizerConfigError, match="regularizer.tlm.keep_rate=0.95"):
        build_regularizer({"keep_rate": 0.9})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stack("tlm")  # current names: no warning


def test_a_run_config_of_the_former_flat_shape_still_builds_with_a_warning() -> None:
    """Run dirs made before methods were nested (``regularizer: {name: dropout, rate: 0.2}``) can still be
    read back (export, predict) for one release."""
    with pytest.warns(DeprecationWarning, match="former flat shape"):
        regularizer = build_regularizer({"name": "dropout", "rate": 0.2})
    assert regularizer.name == "dropout" and regularizer.members[0].p == 0.2
