"""TLM (methods.md, "TLM"): mask structure, statistics, roles of attention layers, edge cases."""

from __future__ import annotations

import pytest
import torch

from regbench.regularizers.attention_hooks import CROSS_ATTR
from regbench.regularizers.backbone_config import UnsupportedBackboneError
from regbench.regularizers.base import RegularizerConfigError
from regbench.regularizers.tlm import (TokenLevelMasking, sample_token_masking, tlm_attention_mask,
                                       token_masking_pattern)
from tests.regularizers.backbones import BACKBONES, SEQ2SEQ, make_batch


def _real(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["attention_mask"].bool()


def _classify_rows(mask: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a recorded bidirectional (B, 1, L, L) mask: kept / siblings / self rows among real tokens.

    self rows do not see themselves; siblings rows see only themselves; every other real row is kept.
    """
    rows = mask[:, 0]
    diag = rows.diagonal(dim1=-2, dim2=-1)
    only_self = diag & (rows.sum(-1) == 1)
    self_rows = ~diag & real
    siblings_rows = only_self & real
    kept_rows = real & ~self_rows & ~siblings_rows
    return kept_rows, siblings_rows, self_rows


def test_pattern_rows_follow_the_definition() -> None:
    keep = torch.tensor([[True, False, True, False]])
    siblings = torch.tensor([[False, True, False, False]])
    pattern = token_masking_pattern(keep, siblings)[0].int()
    assert pattern.tolist() == [
        [1, 0, 1, 0],  # kept row: kept columns only
        [0, 1, 0, 0],  # siblings-masked row: itself only
        [1, 0, 1, 0],  # kept row
        [1, 1, 1, 0],  # self-masked row: everything but itself
    ]


@pytest.mark.parametrize("keep_rate", [0.9, 0.5])
def test_masked_fraction_is_one_minus_keep_rate_over_real_tokens(load_backbone, record_attention, keep_rate) -> None:
    torch.manual_seed(0)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=keep_rate)).train()
    recorder = record_attention(model)
    batch = make_batch("bert", batch=16, length=40, pad_from=[40 - 2 * b for b in range(16)])
    for _ in range(10):
        model(**batch)
    real = _real(batch)
    masked, total = 0, 0
    for _, mask in recorder.masks():
        kept, _, _ = _classify_rows(mask, real)
        masked += int((real & ~kept).sum())
        total += int(real.sum())
        assert not (mask[:, 0] & ~real[:, None, :]).any(), "a padding column was attended"
    assert abs(masked / total - (1 - keep_rate)) < 0.015


def test_masked_columns_are_invisible_to_kept_rows(load_backbone, record_attention) -> None:
    torch.manual_seed(1)
    model = load_backbone("roberta", TokenLevelMasking(keep_rate=0.7)).train()
    recorder = record_attention(model)
    batch = make_batch("roberta", batch=6, length=16)
    model(**batch)
    real = _real(batch)
    for _, mask in recorder.masks():
        kept, _, _ = _classify_rows(mask, real)
        for b in range(real.shape[0]):
            for i in torch.nonzero(kept[b]).flatten():
                assert torch.equal(mask[b, 0, i], kept[b]), "a kept row must see exactly the kept tokens"


@pytest.mark.parametrize("mode", ["siblings", "self"])
def test_single_mode_rows(load_backbone, record_attention, mode) -> None:
    torch.manual_seed(2)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=0.6, mode=mode)).train()
    recorder = record_attention(model)
    batch = make_batch("bert", batch=6, length=12)
    model(**batch)
    real = _real(batch)
    eye = torch.eye(12, dtype=torch.bool)
    n_masked = 0
    for _, mask in recorder.masks():
        kept, siblings, self_rows = _classify_rows(mask, real)
        rows = mask[:, 0]
        if mode == "siblings":
            assert not self_rows.any()
            masked = real & ~kept
            # with keep 0.6 a kept row seeing only itself is possible; masked rows must be exactly e_i
            assert torch.equal(rows[masked], eye.expand(6, 12, 12)[masked])
            n_masked += int(siblings.sum())
        else:
            assert not (siblings & ~kept).any()
            expected = real[:, None, :] & ~eye
            assert torch.equal(rows[self_rows], expected.expand(6, 12, 12)[self_rows])
            n_masked += int(self_rows.sum())
    assert n_masked > 5


def test_both_mode_mixes_types_evenly(load_backbone, record_attention) -> None:
    torch.manual_seed(3)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=0.5)).train()
    recorder = record_attention(model)
    batch = make_batch("bert", batch=16, length=30, pad_from=[30] * 16)
    for _ in range(5):
        model(**batch)
    n_sib = n_self = 0
    for _, mask in recorder.masks():
        _, siblings, self_rows = _classify_rows(mask, _real(batch))
        n_sib, n_self = n_sib + int(siblings.sum()), n_self + int(self_rows.sum())
    assert abs(n_sib / (n_sib + n_self) - 0.5) < 0.05


def test_faithful_self_rows_attend_padding(load_backbone, record_attention) -> None:
    torch.manual_seed(4)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=0.5, mode="self", faithful=True)).train()
    recorder = record_attention(model)
    batch = make_batch("bert", batch=4, length=12, pad_from=[12, 8, 6, 4])
    model(**batch)
    real = _real(batch)
    eye = torch.eye(12, dtype=torch.bool)
    for _, mask in recorder.masks():
        rows = mask[:, 0]
        self_rows = ~rows.diagonal(dim1=-2, dim2=-1)
        assert torch.equal(rows[self_rows], (~eye).expand(4, 12, 12)[self_rows])
        assert (self_rows & ~real).any(), "padding rows are re-drawn as masked rows in faithful mode"
        kept_rows = rows.diagonal(dim1=-2, dim2=-1) & (rows.sum(-1) > 1) & real
        assert not (rows[kept_rows] & ~real.unsqueeze(1).expand(4, 12, 12)[kept_rows]).any()


def test_independent_per_layer_and_step(load_backbone, record_attention) -> None:
    torch.manual_seed(5)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=0.7)).train()
    recorder = record_attention(model)
    batch = make_batch("bert", batch=4, length=16)
    model(**batch)
    model(**batch)
    masks = [mask for _, mask in recorder.masks()]
    assert len(masks) == 4
    assert not torch.equal(masks[0], masks[1]), "layers must draw independent masks"
    assert not torch.equal(masks[0], masks[2]), "steps must draw independent masks"


def test_same_mask_for_every_head(load_backbone) -> None:
    torch.manual_seed(6)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=0.6), attn="eager").train()
    batch = make_batch("bert", batch=3, length=10)
    out = model(**{k: v for k, v in batch.items() if k != "labels"}, output_attentions=True)
    for probs in out.attentions:
        zero = probs == 0
        assert torch.equal(zero, zero[:, :1].expand_as(zero))
        assert zero.any()


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_decoder_self_attention_stays_causal_and_cross_attention_untouched(name, load_backbone,
                                                                          record_attention) -> None:
    # Equal source and target lengths, so query/key shapes cannot tell self- from cross-attention.
    batch = make_batch(name, batch=4, length=10, target_length=10)
    plain = load_backbone(name).train()
    plain_recorder = record_attention(plain)
    plain(**batch)
    torch.manual_seed(7)
    model = load_backbone(name, TokenLevelMasking(keep_rate=0.5)).train()
    recorder = record_attention(model)
    model(**batch)
    cross = {path for path, module in model.named_modules() if module.__dict__.get(CROSS_ATTR)}
    n_cross = n_decoder = 0
    for (path, mask), (plain_path, plain_mask) in zip(recorder.masks(), plain_recorder.masks()):
        assert path == plain_path
        if path in cross:
            n_cross += 1
            assert (mask is None and plain_mask is None) or torch.equal(mask, plain_mask)
        elif path.startswith(("decoder.", "model.decoder.")):
            n_decoder += 1
            assert mask is not None
            upper = torch.ones(10, 10, dtype=torch.bool).triu(1)
            assert not mask[..., upper].any(), "decoder self-attention attended a future position"
            assert int(mask.sum()) < 4 * 10 * 11 // 2, "TLM must mask decoder self-attention too"
    assert n_cross == 2 and n_decoder == 2


def test_cross_attention_modules_are_detected_in_every_family(load_backbone) -> None:
    cross_marker = {"bart": "encoder_attn", "t5": "EncDecAttention", "bert2bert": "crossattention.self"}
    self_marker = {"bart": "self_attn", "t5": "SelfAttention", "bert2bert": ".attention.self"}
    for name in cross_marker:
        model = load_backbone(name, TokenLevelMasking())
        roles = {path: module.__dict__.get(CROSS_ATTR) for path, module in model.named_modules()}
        cross = [path for path in roles if path.endswith(cross_marker[name])]
        self_attention = [path for path in roles if path.endswith(self_marker[name])]
        assert len(cross) == 2 and all(roles[path] for path in cross)
        assert len(self_attention) == 4 and not any(roles[path] for path in self_attention)


def test_deterministic_under_fixed_seed(load_backbone) -> None:
    model = load_backbone("bart", TokenLevelMasking(keep_rate=0.5)).train()
    batch = make_batch("bart")

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model(**batch).logits

    assert torch.equal(run(11), run(11))
    assert not torch.equal(run(11), run(12))


def test_no_nan_when_self_masking_empties_a_row(load_backbone) -> None:
    # One real token and self-masking: the row has nothing left; it must keep its own row, not NaN.
    torch.manual_seed(8)
    model = load_backbone("bert", TokenLevelMasking(keep_rate=0.01, mode="self")).train()
    batch = make_batch("bert", batch=3, length=6, pad_from=[1, 1, 6])
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    t5 = load_backbone("t5", TokenLevelMasking(keep_rate=0.01, mode="self")).train()
    assert torch.isfinite(t5(**make_batch("t5", pad_from=[1, 2, 3, 10])).loss)


@pytest.mark.parametrize("faithful", [False, True])
def test_boolean_additive_and_absent_masks_agree(faithful) -> None:
    torch.manual_seed(0)
    length = 7
    real = torch.tensor([[1] * 7, [1] * 4 + [0] * 3]).bool()
    boolean = real[:, None, None, :].expand(2, 1, length, length)
    additive = torch.zeros(2, 1, length, length).masked_fill(~boolean, torch.finfo(torch.float32).min)
    torch.manual_seed(9)
    from_bool = tlm_attention_mask(boolean, 2, length, 0.6, "both", causal=False, faithful=faithful)
    torch.manual_seed(9)
    from_float = tlm_attention_mask(additive, 2, length, 0.6, "both", causal=False, faithful=faithful)
    torch.manual_seed(9)
    eager_from_bool = tlm_attention_mask(boolean, 2, length, 0.6, "both", causal=False, faithful=faithful,
                                         additive=True)
    assert from_bool.dtype == torch.bool and from_float.dtype == torch.float32
    assert torch.equal(from_bool, from_float == 0)
    assert torch.equal(from_float, eager_from_bool)
    # No padding: the model passes no mask at all; rows still follow the TLM pattern.
    torch.manual_seed(9)
    keep, siblings = sample_token_masking(2, length, 0.6, "both")
    torch.manual_seed(9)
    unmasked = tlm_attention_mask(None, 2, length, 0.6, "both", causal=False, faithful=faithful)
    assert torch.equal(unmasked[:, 0], token_masking_pattern(keep, siblings))


def test_eager_and_sdpa_backbones_train_identically(load_backbone) -> None:
    outputs = []
    for attn in ("sdpa", "eager"):
        model = load_backbone("bert", TokenLevelMasking(keep_rate=0.5), attn=attn).train()
        model.config.hidden_dropout_prob = 0.0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        torch.manual_seed(10)
        outputs.append(model(**make_batch("bert")).logits)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)


def test_unsupported_backbone_raises_instead_of_silently_training() -> None:
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(UnsupportedBackboneError, match="supported"):
        TokenLevelMasking().apply(plain)


def test_unsupported_attention_implementation_raises(saved_backbones) -> None:
    model = BACKBONES["bert"][0].from_pretrained(saved_backbones["bert"], attn_implementation="sdpa")
    model.config._attn_implementation_internal = "flex_attention"
    with pytest.raises(UnsupportedBackboneError, match="sdpa"):
        TokenLevelMasking().apply(model)


def test_attention_dropout_is_zero_by_default(load_backbone) -> None:
    model = load_backbone("bert", TokenLevelMasking())
    assert model.config.attention_probs_dropout_prob == 0.0
    assert model.config.hidden_dropout_prob == 0.1  # hidden dropout unchanged
    t5 = load_backbone("t5", TokenLevelMasking())
    assert {m.dropout for m in t5.modules() if type(m).__name__ == "T5Attention"} == {0.0}
    kept = load_backbone("bert", TokenLevelMasking(attention_dropout=None))
    assert kept.config.attention_probs_dropout_prob == 0.1


@pytest.mark.parametrize("params, key", [
    ({"keep_rate": 0.0}, "keep_rate"), ({"keep_rate": 1.5}, "keep_rate"), ({"mode": "random"}, "mode"),
    ({"faithful": "yes"}, "faithful"), ({"attention_dropout": 1.0}, "attention_dropout"),
])
def test_bad_parameters_name_the_key(params, key) -> None:
    with pytest.raises(RegularizerConfigError, match=f"regularizer.{key}"):
        TokenLevelMasking(**params)
