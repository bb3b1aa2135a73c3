"""Hardware and launcher presets compose; optional dependencies fail fast; only rank 0 writes run files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, compose_config

HARDWARE = sorted(p.stem for p in (REPO / "conf" / "hardware").glob("*.yaml"))
TRAINER_KEYS = {"accelerator", "devices", "strategy", "precision", "num_nodes"}


def test_all_documented_presets_exist():
    assert set(HARDWARE) >= {"cpu", "gpu", "gpu_bf16", "ddp", "ddp_cpu", "fsdp", "deepspeed_stage2"}


@pytest.mark.parametrize("preset", HARDWARE)
def test_every_hardware_preset_composes_into_trainer_arguments(preset):
    import inspect

    import lightning as L

    from regbench.hardware import trainer_hardware_kwargs

    cfg = compose_config([f"hardware={preset}"])
    kwargs = trainer_hardware_kwargs(cfg.hardware)
    assert set(kwargs) == TRAINER_KEYS  # `requires` and other non-Trainer keys are dropped
    assert set(kwargs) <= set(inspect.signature(L.Trainer.__init__).parameters)
    assert isinstance(kwargs["devices"], int) and kwargs["devices"] >= 1


def test_fsdp_preset_builds_a_strategy_object_with_transformer_layer_wrapping(tiny_bert):
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers import AutoModelForSequenceClassification

    from regbench.hardware import TransformerLayerWrapPolicy, trainer_hardware_kwargs

    strategy = trainer_hardware_kwargs(compose_config(["hardware=fsdp"]).hardware)["strategy"]
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, TransformerLayerWrapPolicy)

    # Walk the tree top-down as FSDP does: descend everywhere, wrap what the policy accepts.
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    wrapped = []

    def walk(module):
        if policy(module, recurse=True, nonwrapped_numel=0):
            for child in module.children():
                walk(child)
        if module is not model and policy(module, recurse=False, nonwrapped_numel=0):
            wrapped.append(type(module).__name__)

    walk(model)
    assert wrapped.count("BertLayer") == 2  # one unit per transformer block
    assert "Linear" not in wrapped and "BertForSequenceClassification" not in wrapped


def test_missing_deepspeed_fails_before_any_heavy_work(glue_root, tiny_run_overrides, tmp_path, monkeypatch):
    import importlib.util

    from regbench import train
    from regbench.hardware import MissingDependencyError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real_find_spec(name, *a))
    monkeypatch.setattr("regbench.models.backbone.check_backbone", lambda *a: pytest.fail("backbone checked"))
    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "hardware=deepspeed_stage2"), out)
    with pytest.raises(MissingDependencyError, match=r"deepspeed.*pip install -e '\.\[deepspeed\]'"):
        train.run(cfg)
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("MissingDependencyError")
    assert "params" not in record


def test_only_global_rank_zero_writes_run_files(glue_root, tiny_run_overrides, tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from regbench import train

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "optim.lr=-1"), out)
    with pytest.raises(ValueError):
        train.run(cfg)
    assert not (out / "config.yaml").exists() and not (out / "metrics.json").exists()


def test_wandb_run_id_is_persisted_and_reused_by_a_resumed_run(tmp_path, monkeypatch):
    import lightning.pytorch.loggers as loggers

    from regbench.train import build_loggers

    seen = []

    class FakeWandbLogger:
        def __init__(self, **kwargs):
            seen.append(kwargs)

    monkeypatch.setattr(loggers, "WandbLogger", FakeWandbLogger)
    cfg = compose_config(["logger=wandb"], tmp_path)
    build_loggers(cfg, tmp_path)
    build_loggers(cfg, tmp_path)  # the restarted run
    assert seen[0]["id"] == seen[1]["id"] == (tmp_path / "wandb_id").read_text().strip()
    assert seen[0]["resume"] == "allow" and seen[0]["save_dir"] == str(tmp_path)
    (tmp_path / "other").mkdir()
    build_loggers(cfg, tmp_path / "other")  # another run dir is another W&B run
    assert seen[2]["id"] != seen[0]["id"]


def _resolved_launcher(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True), cfg


def test_slurm_launcher_derives_its_resources_from_the_hardware_preset(monkeypatch):
    monkeypatch.setenv("SLURM_PARTITION", "gpu-long")
    monkeypatch.delenv("SLURM_ACCOUNT", raising=False)
    launcher, cfg = _resolved_launcher(["launcher=slurm", "hardware=ddp", "hardware.devices=8", "hardware.num_nodes=2"])
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (8, 8, 2)
    assert launcher["partition"] == "gpu-long" and launcher["account"] is None
    assert launcher["timeout_min"] > 0 and 0 < launcher["signal_delay_s"] < 60 * launcher["timeout_min"]
    assert launcher["max_num_timeout"] >= 1  # timeouts are requeued: runs resume
    # submitit owns requeue: Lightning's own SLURM auto-requeue is off, step checkpoints are on.
    assert cfg.trainer.plugins[0]["auto_requeue"] is False
    assert cfg.checkpoint.every_n_train_steps >= 1

    cpu_launcher, _ = _resolved_launcher(["launcher=slurm", "hardware=ddp_cpu"])
    assert (cpu_launcher["tasks_per_node"], cpu_launcher["gpus_per_node"]) == (2, 0)
    overridden, _ = _resolved_launcher(["launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=30"])
    assert (overridden["partition"], overridden["timeout_min"]) == ("debug", 30)


def test_train_py_shows_the_slurm_launcher_fields_without_a_cluster():
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "train.py", "launcher=slurm", "hardware=ddp", "--cfg", "hydra"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    launcher = OmegaConf.create(out).hydra.launcher if out.startswith("hydra:") else OmegaConf.create(out).launcher
    raw = OmegaConf.to_container(launcher, resolve=False)
    assert raw["_target_"].endswith("SlurmLauncher")
    assert raw["tasks_per_node"] == "${hardware.devices}" and "${hardware.accelerator}" in raw["gpus_per_node"]
    assert raw["timeout_min"] > 0 and raw["signal_delay_s"] > 0
    assert "SLURM_PARTITION" in raw["partition"] and "SLURM_ACCOUNT" in raw["account"]


def test_ddp_children_of_a_multirun_job_rerun_that_job_only(tmp_path, monkeypatch):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    from regbench.hardware import single_run_relaunch

    compose_config(["seed=2", "hardware=ddp_cpu"])
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN
    argv = ["train.py", "-m", "--config-name", "config", "seed=1,2", "hardware=ddp_cpu"]
    monkeypatch.setattr(sys, "argv", list(argv))
    with single_run_relaunch(str(tmp_path / "job1")):
        assert sys.argv == ["train.py", "--config-name", "config", "seed=2", "hardware=ddp_cpu"]
        assert HydraConfig.get().run.dir == str(tmp_path / "job1")  # what Lightning passes as hydra.run.dir
    assert sys.argv == argv


def test_metrics_json_gets_umask_permissions_for_shared_cluster_dirs(tmp_path):
    import os
    import stat

    from regbench.recorder import write_json_atomic

    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "metrics.json", {"status": "ok"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o640  # not mkstemp's 0600
