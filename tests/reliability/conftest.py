"""Fixtures of the reliability suite: a tiny run in a few seconds, its record, a callback injected into it.

Every scenario here replays a fault or a bad input of issue 13 through the entry points users hit
(``regbench.train.run`` on a Hydra-composed config, the loaders, the sweep CLI, ``python train.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One tokenization cache for the suite (keyed by data, tokenizer and settings, so sharing is safe)."""
    return tmp_path_factory.mktemp("tokenized")


@pytest.fixture
def overrides(tiny_bert, glue_root, shared_cache):
    """``overrides(*extra)``: a 1-epoch RTE run on the tiny BERT (6 optimizer steps per epoch)."""

    def make(*extra: str) -> list[str]:
        return ["task=glue/rte", f"task.data_dir={glue_root / 'rte'}", "backbone=bert-base-cased",
                f"backbone.path={tiny_bert}", "logger=csv", "trainer.max_epochs=1", "data.batch_size=8",
                "data.max_length=32", f"data.cache_dir={shared_cache}", "optim.lr=1e-3",
                "optim.warmup_ratio=0.0", *extra]

    return make


@pytest.fixture
def train(overrides):
    """``train(run_dir, *extra)``: run it in-process; returns what ``run`` returned."""
    from regbench.train import run

    def go(run_dir: Path, *extra: str):
        return run(compose_config(overrides(*extra), run_dir))

    return go


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def inject(monkeypatch):
    """``inject(callback)``: add a Lightning callback to the next runs (next to the checkpoint callbacks)."""
    from regbench import checkpointing

    original = checkpointing.checkpoint_callbacks

    def add(callback) -> None:
        monkeypatch.setattr(checkpointing, "checkpoint_callbacks", lambda *a: [*original(*a), callback])

    return add
