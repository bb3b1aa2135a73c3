"""The optimizer recipe: AdamW kernel choice, no decay on biases/norms, linear warmup and decay."""

from __future__ import annotations

import pytest
import torch

from regbench.models.base import FineTuneModule
from regbench.regularizers import build_regularizer
from tests.conftest import compose_config


class _Trainer:
    estimated_stepping_batches = 100


@pytest.mark.parametrize("implementation, fused, foreach", [("fused", True, None), ("foreach", None, True),
                                                            ("for_loop", None, False)])
def test_adamw_kernel_follows_optim_implementation(implementation, fused, foreach, monkeypatch):
    cfg = compose_config([f"optim.implementation={implementation}", "optim.warmup_ratio=0.1"])
    module = FineTuneModule(cfg, build_regularizer(cfg.regularizer))
    module.model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    monkeypatch.setattr(FineTuneModule, "trainer", _Trainer(), raising=False)
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert optimizer.defaults["fused"] is fused and optimizer.defaults["foreach"] is foreach
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]  # weight vs bias + norm
    assert scheduler.lr_lambdas[0](5) == pytest.approx(0.5) and scheduler.lr_lambdas[0](55) == pytest.approx(0.5)
