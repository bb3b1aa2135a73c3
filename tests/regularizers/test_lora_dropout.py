"""LoRA Dropout (arXiv 2404.09610): Delta W' = diag(m_B) B A diag(m_A), rank kept, masks
resampled, PEFT dropout off, test-time ensemble (N=1 deterministic, N>1 = N masked passes)."""

import pytest
import torch
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from regbench.regularizers import RegularizerConfigError
from regbench.regularizers.lora_dropout import LoRADropout, average_passes, factor_masks
from tests.regularizers.methods import method, stack


def tiny_model(num_labels=3, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(config)


def randomize_adapters(model):
    """PEFT initialises B = 0; give every adapter non-zero factors so masks matter."""
    with torch.no_grad():
        for layer, _, _ in factor_masks(model):
            for adapter in layer.lora_A:
                layer.lora_B[adapter].weight.normal_()
                layer.lora_A[adapter].weight.normal_()


def batch_of(n=4, length=10, num_labels=3):
    ids = torch.randint(5, 100, (n, length), generator=torch.Generator().manual_seed(3))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_effective_delta_w_is_masked_product_and_rank_is_kept():
    torch.manual_seed(0)
    reg = LoRADropout(r=4, p=0.5)
    model = reg.apply(tiny_model())
    randomize_adapters(model)
    model.train()
    layer, mask_a, mask_b = factor_masks(model)[0]
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    x = torch.randn(3, 5, a.shape[1])
    with torch.no_grad():
        y = layer(x)
        m_a, m_b = mask_a.last_mask, mask_b.last_mask
        assert m_a.shape == (a.shape[1],) and m_b.shape == (b.shape[0],)  # masks over in / out, not r
        assert 0 < m_a.sum() < m_a.numel() and 0 < m_b.sum() < m_b.numel()
        delta = torch.diag(m_b) @ b @ a @ torch.diag(m_a)
        expected = layer.base_layer(x) + x @ delta.T * layer.scaling["default"]
        torch.testing.assert_close(y, expected)
        assert torch.linalg.matrix_rank(delta) == 4  # rank r is never dropped
    # masks are resampled for the next step
    with torch.no_grad():
        layer(x)
    assert not (torch.equal(m_a, mask_a.last_mask) and torch.equal(m_b, mask_b.last_mask))


def test_peft_input_dropout_is_off_and_cannot_be_set():
    model = LoRADropout(p=0.5).apply(tiny_model())
    for layer in (m for m in model.modules() if isinstance(m, LoraLayer)):
        assert not any(isinstance(d, nn.Dropout) for d in layer.lora_dropout.values())
    with pytest.raises(RegularizerConfigError):
        stack("lora_dropout", dropout=0.1)


def test_masks_are_shared_by_the_batch():
    reg = LoRADropout(r=4, p=0.5)
    model = reg.apply(tiny_model())
    randomize_adapters(model)
    model.train()
    layer, _, _ = factor_masks(model)[0]
    x = torch.randn(1, 1, 32).repeat(8, 1, 1)
    with torch.no_grad():
        y = layer(x)
    assert torch.equal(y, y[:1].expand_as(y))


def test_single_pass_ensemble_is_the_deterministic_eval_pass():
    reg = LoRADropout(r=4, p=0.5, ensemble_passes=1)
    model = reg.apply(tiny_model())
    randomize_adapters(model)
    model.eval()
    batch = batch_of()
    with torch.no_grad():
        first = reg.predict_logits(model, batch)
        second = reg.predict_logits(model, batch)
        plain = model(**batch).logits
    assert torch.equal(first, second) and torch.equal(first, plain)
    assert all(a.last_mask is None and b.last_mask is None for _, a, b in factor_masks(model))


def test_eval_equals_plain_peft_lora_with_the_same_weights():
    reg = LoRADropout(r=4, p=0.5)
    model = reg.apply(tiny_model())
    randomize_adapters(model)
    plain = method("lora", r=4, p=0.0).apply(tiny_model())
    plain.load_state_dict(model.state_dict())
    batch = batch_of()
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(reg.predict_logits(model, batch), plain(**batch).logits)


@pytest.mark.parametrize("average", ["probs", "logits"])
def test_ensemble_averages_n_distinct_masked_passes(average):
    n = 4
    reg = LoRADropout(r=4, p=0.5, ensemble_passes=n, ensemble_average=average)
    model = reg.apply(tiny_model())
    randomize_adapters(model)
    model.eval()
    batch = batch_of()
    with torch.no_grad():
        torch.manual_seed(11)
        ensembled = reg.predict_logits(model, batch)
        # replay the same N masked passes by hand
        torch.manual_seed(11)
        reg._switch.forced = True
        passes = [model(**batch).logits for _ in range(n)]
        reg._switch.forced = False
        deterministic = model(**batch).logits
    assert all(not torch.allclose(passes[i], passes[j]) for i in range(n) for j in range(i))
    if average == "probs":
        expected = torch.stack([p.softmax(-1) for p in passes]).mean(0)
        torch.testing.assert_close(ensembled.exp(), expected)
    else:
        torch.testing.assert_close(ensembled, torch.stack(passes).mean(0))
    assert not torch.allclose(ensembled, deterministic)
    assert not model.training and not reg._switch.forced  # eval state untouched


def test_average_passes_regression_averages_outputs():
    outputs = [torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [6.0]])]
    torch.testing.assert_close(average_passes(outputs, "probs"), torch.tensor([[2.0], [4.0]]))


def test_describe_records_ensemble_settings():
    reg = method("lora_dropout", p=0.2, ensemble_passes=5, ensemble_average="logits")
    reg.apply(tiny_model())
    info = reg.describe()
    assert info["ensemble_passes"] == 5 and info["ensemble_average"] == "logits" and info["p"] == 0.2
    assert info["name"] == "lora_dropout" and "dropout" not in info


def test_adapter_state_dict_is_unchanged_by_masks():
    plain = method("lora", r=4, p=0.0).apply(tiny_model())
    masked = LoRADropout(r=4).apply(tiny_model())
    assert plain.state_dict().keys() == masked.state_dict().keys()


@pytest.mark.parametrize("params, key, text", [
    ({"p": 1.0}, "regularizer.lora_dropout.p", "[0.0, 1.0)"),
    ({"ensemble_passes": 0}, "regularizer.lora_dropout.ensemble_passes", "[1"),
    ({"ensemble_passes": 1.5}, "regularizer.lora_dropout.ensemble_passes", "integer"),
    ({"ensemble_average": "votes"}, "regularizer.lora_dropout.ensemble_average", "['probs', 'logits']"),
])
def test_bad_parameters_name_key_and_range(params, key, text):
    with pytest.raises(RegularizerConfigError) as err:
        stack("lora_dropout", **params)
    assert key in str(err.value) and text in str(err.value)
