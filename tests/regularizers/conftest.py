"""Fixtures for regularizer tests: tiny backbones saved with save_pretrained and loaded back through
from_pretrained (the path the training loop uses), with a regularizer's hooks applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from transformers import AutoConfig

from tests.regularizers.backbones import BACKBONES, AttentionRecorder


@pytest.fixture(scope="session")
def saved_backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny backbone, saved once per session in the official save_pretrained layout."""
    root = tmp_path_factory.mktemp("backbones")
    paths = {}
    for name, (_, build, _) in BACKBONES.items():
        torch.manual_seed(0)
        build().save_pretrained(root / name)
        paths[name] = root / name
    return paths


@pytest.fixture
def load_backbone(saved_backbones: dict[str, Path]) -> Callable[..., Any]:
    """``load_backbone(name, regularizer=None, attn="sdpa")``: the training loop's order of hooks:
    configure the config, from_pretrained, apply."""

    def load(name: str, regularizer: Any = None, attn: str = "sdpa") -> Any:
        cls = BACKBONES[name][0]
        config = AutoConfig.from_pretrained(saved_backbones[name])
        if regularizer is not None:
            regularizer.configure_backbone_config(config)
        model = cls.from_pretrained(saved_backbones[name], config=config, attn_implementation=attn)
        if regularizer is not None:
            model = regularizer.apply(model)
        return model

    return load


@pytest.fixture
def record_attention(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], AttentionRecorder]:
    """``record_attention(model)`` -> recorder of every sdpa call the model makes afterwards."""
    from transformers import AttentionInterface

    def start(model: Any) -> AttentionRecorder:
        recorder = AttentionRecorder(model)
        monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", recorder)
        return recorder

    return start


@pytest.fixture(autouse=True)
def single_thread() -> Any:
    """Tiny models run fastest on one thread (and far faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
