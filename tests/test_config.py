"""Config tree: every group option composes; bad values fail early with the key and range."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from regbench.cli import group_options
from regbench.metrics import metric_name
from tests.conftest import CONF_DIR, REPO, compose_config


def options(group: str) -> list[str]:
    """Every option of a config group, read from the conf tree (nested groups as a/b)."""
    return group_options(Path(CONF_DIR), group)


def test_group_listing_sees_every_glue_task_and_required_options():
    assert {f"glue/{t}" for t in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")} <= set(options("task"))
    assert {"bert-base-cased", "bert-large-cased", "bert-base-uncased", "roberta-base", "minilm-l6"} <= set(options("backbone"))
    assert {"cpu", "gpu"} <= set(options("hardware"))
    assert {"csv", "wandb", "none"} <= set(options("logger"))


def _resolved_product(groups: dict[str, list[str]], pairs_only: bool = False) -> int:
    """Compose each option once with Hydra, then merge and resolve every combination of them
    (``pairs_only``: every pair of options of two groups, the other groups at their defaults).

    The groups are independent in the defaults list (no option pulls in another group), so a
    combination composes exactly when the merged config resolves; this checks the full product
    in seconds, where one Hydra compose per combination would take minutes.
    """
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        base = compose(config_name="config", overrides=["paths.output_dir=/tmp/regbench-compose"])
        parts = {g: {o: compose(config_name="config", overrides=[f"{g}={o}"])[g] for o in opts}
                 for g, opts in groups.items()}
    if pairs_only:  # an interpolation ties two groups at most; the full product is the slow test below
        combos = [((a, *x), (b, *y)) for a, b in itertools.combinations(groups, 2)
                  for x, y in itertools.product(parts[a].items(), parts[b].items())]
    else:
        combos = [tuple((g, *item) for g, item in zip(groups, combo))
                  for combo in itertools.product(*(parts[g].items() for g in groups))]
    count = 0
    for combo in combos:
        cfg = base.copy()
        for group, option, node in combo:
            cfg[group] = node
        resolved = OmegaConf.to_container(cfg, resolve=True)  # raises on a broken interpolation
        assert resolved["task"]["main_metric"] in map(metric_name, resolved["task"]["metrics"])
        count += 1
    return count


def test_every_pair_of_task_backbone_hardware_logger_options_composes():
    groups = {g: options(g) for g in ("task", "backbone", "hardware", "logger")}
    count = _resolved_product(groups, pairs_only=True)
    assert count == sum(len(groups[a]) * len(groups[b]) for a, b in itertools.combinations(groups, 2)) >= 9 * 5


@pytest.mark.slow
def test_every_task_backbone_hardware_logger_combination_composes():
    groups = {g: options(g) for g in ("task", "backbone", "hardware", "logger")}
    count = _resolved_product(groups)
    assert count == len(list(itertools.product(*groups.values()))) >= 9 * 5 * 2 * 3


@pytest.mark.slow
def test_every_combination_composes_through_hydra_one_by_one():
    GlobalHydra.instance().clear()
    combos = list(itertools.product(options("task"), options("backbone"), options("hardware"), options("logger")))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for task, backbone, hardware, logger in combos:
            cfg = compose(config_name="config", overrides=[f"task={task}", f"backbone={backbone}",
                                                            f"hardware={hardware}", f"logger={logger}"])
            assert cfg.task.name == Path(task).name
            assert cfg.backbone.name == backbone
            assert cfg.hardware.accelerator
            assert cfg.task.main_metric in map(metric_name, cfg.task.metrics)
    assert len(combos) >= 9 * 5 * 2 * 3


def test_defaults_reproduce_the_tlm_reference_recipe():
    cfg = compose_config([])
    assert cfg.backbone.name == "bert-base-cased"
    assert (cfg.data.max_length, cfg.data.batch_size, cfg.optim.lr) == (128, 8, 1e-5)


def test_every_experiment_preset_composes():
    for name in options("experiment"):
        cfg = compose_config([f"experiment={name}"])
        assert cfg.task.name and cfg.backbone.name


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=-1", "optim.lr=-1 is out of range: must be > 0"),
        ("optim.warmup_ratio=1.5", "optim.warmup_ratio=1.5 is out of range: must be [0, 1]"),
        ("optim.warmup_ratio=-0.1", "optim.warmup_ratio=-0.1 is out of range: must be [0, 1]"),
        ("data.max_length=0", "data.max_length=0 is out of range: must be >= 1"),
        ("data.batch_size=0", "data.batch_size=0 is out of range: must be >= 1"),
        ("optim.weight_decay=-0.01", "optim.weight_decay=-0.01 is out of range: must be >= 0"),
        ("resume=sometimes", "resume='sometimes' must be auto, never or a path to a .ckpt file"),
        ("optim.implementation=magic", "optim.implementation='magic' is not one of ['fused', 'foreach', 'for_loop']"),
    ],
)
def test_invalid_values_fail_before_loading_anything(override, message, tmp_path, monkeypatch):
    from regbench import train
    from regbench.config import ConfigError

    def must_not_load(*args, **kwargs):
        raise AssertionError("backbone touched before validation")

    monkeypatch.setattr("regbench.models.backbone.check_backbone", must_not_load)
    cfg = compose_config([override], tmp_path)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        train.run(cfg)


def test_unknown_group_option_lists_valid_ones():
    result = subprocess.run([sys.executable, "train.py", "task=glue/sst3"], cwd=REPO, capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode != 0
    assert "Unknown option 'glue/sst3' for config group 'task'" in result.stderr
    assert "task=glue/sst2" in result.stderr and "task=glue/rte" in result.stderr
    # Plain groups get Hydra's own listing; the pre-check lists them too.
    result = subprocess.run([sys.executable, "train.py", "hardware=gpu,tpu"], cwd=REPO, capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode != 0 and "Unknown option 'tpu'" in result.stderr and "hardware=cpu" in result.stderr


def test_unknown_regularizer_parameter_names_the_regularizer(tmp_path):
    from regbench.regularizers import RegularizerConfigError, build_regularizer

    result = subprocess.run([sys.executable, "train.py", "regularizer=[tlm,nope]"], cwd=REPO, capture_output=True,
                            text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode != 0 and "Unknown option 'nope'" in result.stderr and "regularizer=none" in result.stderr
    cfg = compose_config(["regularizer=none", "+regularizer.none.rate=0.1"])
    with pytest.raises(RegularizerConfigError, match="regularizer 'none'"):
        build_regularizer(cfg.regularizer)


def test_experiment_presets_override_top_level_defaults():
    cfg = compose_config(["experiment=demo_minilm_sst2"])
    assert (cfg.task.name, cfg.backbone.name) == ("sst2", "minilm-l6")
    assert (cfg.data.train_limit, cfg.data.max_length, cfg.data.batch_size) == (2000, 64, 32)
    assert cfg.trainer.max_epochs == 1 and cfg.optim.lr == 5e-5
