"""Shared fixtures: offline environment, a tiny BERT saved to disk, GLUE files, composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import regbench  # noqa: F401  (registers the config resolvers, as train.py does)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """Path of a tiny BERT (config + weights + tokenizer) written with save_pretrained."""
    from tests.fixtures import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory) -> dict:
    """Tiny GPT-2, Llama and Qwen2 causal LMs with their tokenizers (save_pretrained), by family."""
    from tests.decoder_fixtures import FAMILIES, save_tiny_decoder

    return {family: save_tiny_decoder(tmp_path_factory.mktemp(family), family) for family in FAMILIES}


@pytest.fixture(scope="session")
def glue_root(tmp_path_factory) -> Path:
    """Every GLUE task's train/dev files in the official layout, one folder per task."""
    from tests.fixtures import GLUE_TASKS, write_glue_task

    root = tmp_path_factory.mktemp("glue")
    for task in GLUE_TASKS:
        write_glue_task(root / task, task)
    return root


def compose_config(overrides: list[str], output_dir: Path | None = None):
    """Compose the training config like `python train.py <overrides>`, with HydraConfig set."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as @hydra.main hands it to the task function
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def tiny_run_overrides(tiny_bert, tmp_path):
    """Overrides that make any task train in seconds on the tiny BERT."""

    def make(task: str, data_dir: Path, *extra: str) -> list[str]:
        return [
            f"task={task}", f"task.data_dir={data_dir}", "backbone=bert-base-cased",
            f"backbone.path={tiny_bert}", "logger=csv", "trainer.max_epochs=2",
            "data.batch_size=8", "data.max_length=32", f"data.cache_dir={tmp_path / 'cache'}",
            "optim.lr=1e-3", "optim.warmup_ratio=0.0", *extra,
        ]

    return make
