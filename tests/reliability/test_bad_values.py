"""Issue 13, item 5: every bad config value is refused early, by name, through one validation layer.

The tables below are the bad inputs tried (counted in the closing report); each must be refused by
`validate` (config keys) or by the regularizer's constructor (its parameters) with the key in the message.
"""

from __future__ import annotations

import inspect
import math
import typing

import pytest

from tests.conftest import compose_config

NAN, INF = float("nan"), float("inf")

# (override, key named in the error): Hydra parses the value as a user typing it would get it
BAD_CONFIG = [
    ("seed=abc", "seed"), ("seed=-1", "seed"), ("seed=2.5", "seed"), ("seed=true", "seed"), ("seed=4294967296", "seed"),
    ("data.batch_size=2.5", "data.batch_size"), ("data.batch_size=0", "data.batch_size"),
    ("data.batch_size=nan", "data.batch_size"), ("data.batch_size='8'", "data.batch_size"),
    ("data.batch_size=true", "data.batch_size"), ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("data.eval_batch_size=1.5", "data.eval_batch_size"), ("data.max_length=0", "data.max_length"),
    ("data.max_length=64.5", "data.max_length"), ("data.max_length=-3", "data.max_length"),
    ("data.num_workers=-1", "data.num_workers"), ("data.num_workers=1.5", "data.num_workers"),
    ("data.train_limit=0", "data.train_limit"), ("data.train_limit=10.5", "data.train_limit"),
    ("data.eval_limit=-5", "data.eval_limit"), ("data.eval_limit=abc", "data.eval_limit"),
    ("optim.lr=nan", "optim.lr"), ("optim.lr=inf", "optim.lr"), ("optim.lr=-1", "optim.lr"), ("optim.lr=0", "optim.lr"),
    ("optim.lr=abc", "optim.lr"), ("optim.lr=true", "optim.lr"), ("optim.weight_decay=nan", "optim.weight_decay"),
    ("optim.weight_decay=-0.01", "optim.weight_decay"), ("optim.eps=0", "optim.eps"), ("optim.eps=-inf", "optim.eps"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio"), ("optim.warmup_ratio=nan", "optim.warmup_ratio"),
    ("optim.warmup_ratio=-0.1", "optim.warmup_ratio"), ("optim.grad_clip=-1", "optim.grad_clip"),
    ("optim.grad_clip=nan", "optim.grad_clip"), ("optim.accumulate_grad_batches=1.5", "optim.accumulate_grad_batches"),
    ("optim.accumulate_grad_batches=0", "optim.accumulate_grad_batches"),
    ("optim.betas=[0.9]", "optim.betas"), ("optim.betas=[0.9,1.0]", "optim.betas"), ("optim.betas=[nan,0.999]", "optim.betas"),
    ("optim.implementation=magic", "optim.implementation"),
    ("trainer.max_epochs=0", "trainer.max_epochs"), ("trainer.max_epochs=2.5", "trainer.max_epochs"),
    ("trainer.max_epochs=-1", "trainer.max_epochs"),  # -1 without max_steps: training never ends
    ("trainer.max_steps=-2", "trainer.max_steps"), ("trainer.max_steps=10.5", "trainer.max_steps"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval"), ("trainer.val_check_interval=1.5", "trainer.val_check_interval"),
    ("trainer.val_check_interval=nan", "trainer.val_check_interval"),
    ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"), ("trainer.deterministic=maybe", "trainer.deterministic"),
    ("trainer.deterministic='no'", "trainer.deterministic"), ("+trainer.max_time=soon", "trainer.max_time"),
    ("+trainer.max_time={hours: nan}", "trainer.max_time"),
    ("checkpoint.enabled='no'", "checkpoint.enabled"), ("checkpoint.enabled=1", "checkpoint.enabled"),
    ("checkpoint.save_last=yes", "checkpoint.save_last"), ("checkpoint.save_top_k=1.5", "checkpoint.save_top_k"),
    ("checkpoint.every_n_train_steps=0", "checkpoint.every_n_train_steps"),
    ("checkpoint.every_n_train_steps=2.5", "checkpoint.every_n_train_steps"),
    ("checkpoint.on_interrupt=sometimes", "checkpoint.on_interrupt"),
    ("raise_on_failure='false'", "raise_on_failure"),
    ("resume=sometimes", "resume"), ("resume=http://example.com/x.ckpt", "resume"), ("resume=s3://bucket/x.ckpt", "resume"),
    ("resume=/does/not/exist.ckpt", "resume"),
    ("hardware.devices=0", "hardware.devices"), ("hardware.devices=1.5", "hardware.devices"),
    ("hardware.num_nodes=0", "hardware.num_nodes"), ("hardware.precision=15-mixed", "hardware.precision"),
    ("backbone.kind=seq2seq", "backbone.kind"), ("task.main_metric=f1", "task.main_metric"),  # glue/rte: no seq2seq
    ("task.eval_splits=[]", "task.eval_splits"), ("task.kind=ranking", "task.kind"),
]


@pytest.fixture(scope="module")
def compose():
    """Hydra initialised once for the module (composing is what the table costs)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield lambda overrides: hydra_compose(config_name="config", overrides=["paths.output_dir=/unused", *overrides])
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("override, key", BAD_CONFIG, ids=[o for o, _ in BAD_CONFIG])
def test_every_bad_config_value_is_refused_naming_its_key(override, key, compose):
    from regbench.config import ConfigError, validate

    cfg = compose([override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_the_defaults_and_every_preset_pass_validation(compose):
    from pathlib import Path

    from regbench.cli import group_options
    from regbench.config import validate
    from tests.conftest import CONF_DIR

    validate(compose([]))
    for group in ("experiment", "hardware", "launcher"):  # (tasks x backbones: tests/test_config.py)
        for option in group_options(Path(CONF_DIR), group):
            validate(compose([f"{group}={option}"]))


def test_a_bad_value_still_leaves_config_yaml_and_a_failed_metrics_json(overrides, tmp_path, monkeypatch):
    """`seed=abc` crashed before config.yaml or metrics.json existed."""
    import json

    from regbench.config import ConfigError
    from regbench.train import run

    monkeypatch.setattr("regbench.models.backbone.check_backbone",
                        lambda *a: (_ for _ in ()).throw(AssertionError("backbone touched before validation")))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="seed='abc' must be an integer"):
        run(compose_config(overrides("seed=abc"), out))
    assert (out / "config.yaml").is_file()
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["status"] == "failed" and rec["seed"] == "abc" and "ConfigError" in rec["error"]


# -- regularizer parameters: generated from every registered method's signature ---------------------------
def _bad_values(annotation) -> list:
    origin = typing.get_origin(annotation)
    kinds = set(typing.get_args(annotation)) if origin is not None else {annotation}
    if bool in kinds:
        return ["no", "yes", 1, None] if type(None) not in kinds else ["no", "false", 0]
    if float in kinds:
        return [NAN, INF, -INF, "0.5", True] + ([] if type(None) in kinds else [None])
    if int in kinds:
        return [2.5, NAN, "8", True]
    return []


def _regularizer_cases() -> list:
    from hydra.utils import get_class

    from tests.regularizers.methods import METHODS, method_config

    cases = []
    for name in METHODS:
        cls = get_class(method_config(name)[name]["_target_"])
        hints = typing.get_type_hints(cls.__init__)
        for param in inspect.signature(cls.__init__).parameters:
            for value in _bad_values(hints.get(param)):
                cases.append(pytest.param(name, param, value, id=f"{name}.{param}={value!r}"))
    return cases


REGULARIZER_CASES = _regularizer_cases()


@pytest.mark.parametrize("name, param, value", REGULARIZER_CASES)
def test_every_bad_regularizer_value_is_refused_naming_its_key(name, param, value):
    """`drophead p=nan` looped forever at step 0; `tlm keep_rate=nan` masked every token and reported ok;
    `mixout disable_dropout="no"` was read as true."""
    from regbench.regularizers import RegularizerConfigError, build_regularizer
    from tests.regularizers.methods import method_config

    with pytest.raises(RegularizerConfigError, match=rf"regularizer\.{name}\.{param}"):
        build_regularizer(method_config(name, **{param: value}))


def test_the_generated_table_covers_every_method_with_numeric_or_boolean_parameters():
    names = {case.values[0] for case in REGULARIZER_CASES}
    assert {"tlm", "drophead", "mixout", "dropout", "attention_dropout", "very_large_dropout", "lora"} <= names
    assert len(REGULARIZER_CASES) >= 50


@pytest.mark.parametrize("value", [NAN, INF, "0.1", True, None])
def test_range_checks_refuse_non_numbers(value):
    from regbench.regularizers.base import RegularizerConfigError, check_range

    with pytest.raises(RegularizerConfigError, match="regularizer.p"):
        check_range("p", value, 0.0, 1.0)
    assert check_range("p", 1, 0.0, 1.0) == 1.0 and not math.isnan(check_range("p", 0.5, 0.0, 1.0))
