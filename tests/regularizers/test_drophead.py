"""DropHead (methods.md, "DropHead"): H / kept rescaling, redraws, schedule."""

from __future__ import annotations

import pytest
import torch

from regbench.regularizers.base import RegularizerConfigError
from regbench.regularizers.drophead import DropHead, drophead_scale, v_shaped_rate
from regbench.regularizers.tlm import TokenLevelMasking
from tests.regularizers.backbones import HEADS, make_batch
from tests.regularizers.methods import as_stack


def test_kept_heads_are_rescaled_by_heads_over_kept() -> None:
    torch.manual_seed(0)
    scale = drophead_scale(2000, 8, p=0.6)
    kept = (scale > 0).sum(dim=1)
    assert (kept > 0).all(), "an example lost all its heads: it must be redrawn"
    expected = 8 / kept.to(torch.float32)
    assert torch.allclose(scale.max(dim=1).values, expected)
    assert torch.allclose(scale.sum(dim=1), torch.full((2000,), 8.0))
    # Redrawing all-dropped examples conditions z on at least one kept head.
    p_keep = 0.4
    mean_kept_given_any = 8 * p_keep / (1 - 0.6**8)
    assert abs(kept.float().mean() - mean_kept_given_any) < 0.1


def test_hook_multiplies_the_per_head_context() -> None:
    torch.manual_seed(1)
    module = torch.nn.Module().train()
    regularizer = DropHead(p=0.5)
    batch, length, dim = 64, 5, 3
    query = torch.zeros(batch, HEADS, length, dim)

    def base(module, query, key, value, mask, **kwargs):  # the backbone's own attention: all ones
        return torch.ones(batch, length, HEADS, dim), None

    out, _ = regularizer.attention(module, base, False, query, query, query, None)
    per_head = out[:, 0, :, 0]  # (B, H): identical across positions and head dims
    assert torch.equal(out, per_head[:, None, :, None].expand_as(out))
    kept = (per_head > 0).sum(dim=1, keepdim=True).float()
    assert torch.allclose(per_head[per_head > 0], (HEADS / kept).expand_as(per_head)[per_head > 0])
    module.eval()
    out, _ = regularizer.attention(module, base, False, query, query, query, None)
    assert torch.equal(out, torch.ones_like(out))


def test_heads_drop_per_example_in_a_real_model(load_backbone) -> None:
    torch.manual_seed(2)
    model = load_backbone("bert", DropHead(p=0.5)).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = make_batch("bert", batch=4)
    batch = {k: v[:1].repeat(4, *[1] * (v.dim() - 1)) for k, v in batch.items()}  # 4 copies of one example
    logits = model(**batch).logits
    assert not torch.allclose(logits[0], logits[1]), "identical examples must draw different heads"


@pytest.mark.parametrize("step, rate", [(0, 0.3), (10, 0.15), (20, 0.0), (60, 0.1), (100, 0.2), (150, 0.2)])
def test_v_shaped_schedule_values(step, rate) -> None:
    regularizer = DropHead(schedule="v_shaped", p_start=0.3, p_end=0.2, turning_point=0.2)
    assert regularizer.rate == pytest.approx(0.3)
    regularizer.on_train_step(step, 100)
    assert regularizer.rate == pytest.approx(rate)
    assert v_shaped_rate(step, 100, 0.3, 0.2, 0.2) == pytest.approx(rate)


def test_v_shaped_edges_and_constant_schedule() -> None:
    assert v_shaped_rate(50, 100, 0.3, 0.2, 0.0) == pytest.approx(0.1)  # turning at 0: only rising
    assert v_shaped_rate(50, 100, 0.3, 0.2, 1.0) == pytest.approx(0.15)  # turning at 1: only falling
    constant = DropHead(p=0.25)
    constant.on_train_step(70, 100)
    assert constant.rate == 0.25


@pytest.mark.parametrize("params, key", [
    ({"p": 1.0}, "p"), ({"p": -0.1}, "p"), ({"schedule": "cosine"}, "schedule"),
    ({"p_start": 1.2}, "p_start"), ({"p_end": 1.0}, "p_end"), ({"turning_point": 1.5}, "turning_point"),
])
def test_bad_parameters_name_the_key(params, key) -> None:
    with pytest.raises(RegularizerConfigError, match=rf"regularizer\.{key}="):
        DropHead(**params)


@pytest.mark.parametrize("regularizer", [DropHead(p=0.2), TokenLevelMasking(keep_rate=0.8)], ids=["drophead", "tlm"])
def test_a_hook_that_never_runs_fails_the_first_training_step(load_backbone, regularizer) -> None:
    from regbench.regularizers.backbone_config import UnsupportedBackboneError

    model = load_backbone("bert", regularizer).train()
    model.set_attn_implementation("sdpa")  # attention bypasses the hook from now on
    with pytest.raises(UnsupportedBackboneError, match="no attention layer"):
        as_stack(regularizer).training_loss(model, make_batch("bert"))
    hooked = type(regularizer)()
    model = load_backbone("bert", hooked).train()
    assert as_stack(hooked).training_loss(model, make_batch("bert")).isfinite()
