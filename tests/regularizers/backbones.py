"""Tiny backbones for regularizer tests (built from configs), their batches and an attention recorder."""

from __future__ import annotations

from typing import Any, Callable

import torch
from transformers import (BartConfig, BartForConditionalGeneration, BartForSequenceClassification,
                          BertConfig, BertForSequenceClassification, EncoderDecoderConfig, EncoderDecoderModel,
                          RobertaConfig, RobertaForSequenceClassification, T5Config, T5ForConditionalGeneration,
                          T5ForSequenceClassification)
from transformers.integrations.sdpa_attention import sdpa_attention_forward

VOCAB, HIDDEN, LAYERS, HEADS, FFN = 100, 32, 2, 4, 37


def _bert_config(**kw: Any) -> BertConfig:
    return BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=FFN, max_position_embeddings=64, num_labels=2, **kw)


def _bart_config() -> BartConfig:
    config = BartConfig(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
                        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN,
                        decoder_ffn_dim=FFN, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2)
    config.id2label = {0: "no", 1: "yes"}  # BartConfig defaults to 3 labels and would reload with 3
    return config


def _t5_config() -> T5Config:
    return T5Config(vocab_size=VOCAB, d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=FFN, num_layers=LAYERS,
                    num_decoder_layers=LAYERS, num_heads=HEADS, num_labels=2, pad_token_id=0, eos_token_id=1,
                    decoder_start_token_id=0)


def _bert2bert() -> EncoderDecoderModel:
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        _bert_config(), _bert_config(is_decoder=True, add_cross_attention=True))
    config.decoder_start_token_id, config.pad_token_id = 2, 0
    return EncoderDecoderModel(config=config)


# name -> (class used to load, builder of a fresh random model, is seq2seq)
BACKBONES: dict[str, tuple[type, Callable[[], Any], bool]] = {
    "bert": (BertForSequenceClassification, lambda: BertForSequenceClassification(_bert_config()), False),
    "roberta": (RobertaForSequenceClassification, lambda: RobertaForSequenceClassification(RobertaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=70, pad_token_id=1, num_labels=2)), False),
    "bart_cls": (BartForSequenceClassification, lambda: BartForSequenceClassification(_bart_config()), False),
    "t5_cls": (T5ForSequenceClassification, lambda: T5ForSequenceClassification(_t5_config()), False),
    "bart": (BartForConditionalGeneration, lambda: BartForConditionalGeneration(_bart_config()), True),
    "t5": (T5ForConditionalGeneration, lambda: T5ForConditionalGeneration(_t5_config()), True),
    "bert2bert": (EncoderDecoderModel, _bert2bert, True),
}
CLASSIFIERS = [name for name, (_, _, seq2seq) in BACKBONES.items() if not seq2seq]
SEQ2SEQ = [name for name, (_, _, seq2seq) in BACKBONES.items() if seq2seq]


def make_batch(name: str, batch: int = 4, length: int = 10, seed: int = 0, pad_from: list[int] | None = None,
               target_length: int | None = None) -> dict[str, torch.Tensor]:
    """Random inputs with right padding (``pad_from[b]`` = real length of example b) and labels."""
    gen = torch.Generator().manual_seed(seed)
    pad_from = pad_from if pad_from is not None else [length - (b % 3) * 2 for b in range(batch)]
    input_ids = torch.randint(5, VOCAB, (batch, length), generator=gen)
    attention_mask = (torch.arange(length)[None, :] < torch.tensor(pad_from)[:, None]).long()
    pad_id = 0 if name in ("t5", "t5_cls", "bert", "bert2bert") else 1
    input_ids = input_ids.masked_fill(attention_mask == 0, pad_id)
    if name in ("bart", "bart_cls", "t5", "t5_cls"):  # their classification heads pool the last <eos>
        input_ids[torch.arange(batch), torch.tensor(pad_from) - 1] = 2 if name.startswith("bart") else 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if BACKBONES[name][2]:
        out["labels"] = torch.randint(5, VOCAB, (batch, target_length or length - 2), generator=gen)
    else:
        out["labels"] = torch.randint(0, 2, (batch,), generator=gen)
    return out


class AttentionRecorder:
    """Stands in for the global sdpa function and records, per module path, the mask it received."""

    def __init__(self, model: Any) -> None:
        self.paths = {id(module): path for path, module in model.named_modules()}
        self.calls: list[tuple[str, torch.Tensor | None, tuple[int, ...], tuple[int, ...]]] = []
        self.sdpa = sdpa_attention_forward

    def __call__(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, **kwargs: Any) -> Any:
        self.calls.append((self.paths[id(module)], attention_mask, tuple(query.shape), tuple(key.shape)))
        return self.sdpa(module, query, key, value, attention_mask, **kwargs)

    def masks(self, contains: str = "") -> list[tuple[str, torch.Tensor | None]]:
        return [(path, mask) for path, mask, _, _ in self.calls if contains in path]
