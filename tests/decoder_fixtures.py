"""Tiny decoder-only backbones (GPT-2, Llama, Qwen2 configs, 2 layers, hidden 32) with byte-level
tokenizers built from a vocabulary (no download), saved with ``save_pretrained``; Alpaca and MMLU
fixture files in their official layouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

FAMILIES = ("gpt2", "llama", "qwen2")
BACKBONE_OPTION = {"gpt2": "gpt2", "llama": "smollm2-135m", "qwen2": "qwen2.5-0.5b"}


def _byte_vocab(specials: list[str]) -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    return vocab


def tiny_tokenizer(family: str):
    """GPT-2: byte-level BPE, eos = bos = ``<|endoftext|>``, no pad (the real GPT-2's situation);
    Llama: SentencePiece-style BPE with byte fallback, BOS added, no pad; Qwen2: byte-level BPE, pad token."""
    if family == "gpt2":
        from transformers import GPT2Tokenizer

        return GPT2Tokenizer(vocab=_byte_vocab(["<|endoftext|>"]), merges=[])
    if family == "qwen2":
        from transformers import Qwen2Tokenizer

        return Qwen2Tokenizer(vocab=_byte_vocab(["<|endoftext|>"]), merges=[])
    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for ch in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;?!'-[]()|<>=":
        vocab.setdefault(ch, len(vocab))
    return LlamaTokenizer(vocab=vocab, merges=[])


def tiny_config(family: str, vocab_size: int, tokenizer):
    common = {"vocab_size": vocab_size, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if family == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512, **common)
    from transformers import LlamaConfig, Qwen2Config

    cls = LlamaConfig if family == "llama" else Qwen2Config
    extra = {"tie_word_embeddings": True} if family == "qwen2" else {}  # as Qwen2.5-0.5B
    return cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=512, **common, **extra)


def save_tiny_decoder(path: Path, family: str, seed: int = 0) -> Path:
    """A tiny causal LM of ``family`` and its tokenizer, saved with ``save_pretrained``."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer(family)
    config = tiny_config(family, len(tokenizer), tokenizer)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


ALPACA_ROWS = [
    {"instruction": "Give the capital of the country.", "input": "France", "output": "Paris."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5."},
    {"instruction": "Say hello.", "input": "", "output": "Hello!"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
]


def write_alpaca(path: Path, n: int = 16) -> Path:
    """Alpaca's JSON layout: one list of {instruction, input, output} objects."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [ALPACA_ROWS[i % len(ALPACA_ROWS)] for i in range(n)]
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


MMLU_ROWS = {
    "abstract_algebra": [["Find the order of the group Z_4.", "1", "2", "3", "4", "D"],
                         ["Is Z_2 a field?", "Yes", "No", "Only sometimes", "Never", "A"]],
    "high_school_geography": [["Which is a continent?", "Asia", "Paris", "Nile", "Alps", "A"],
                              ["Which river is longest, \"quoted\", with commas?", "Nile", "Thames", "Seine", "Po", "A"],
                              ["Which is a city?", "Europe", "Rome", "Sahara", "Andes", "B"]],
}


def write_mmlu(root: Path, split: str = "test") -> Path:
    """MMLU's official CSV layout: ``<split>/<subject>_<split>.csv``, no header, columns
    question, A, B, C, D, answer."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for subject, rows in MMLU_ROWS.items():
        with open(folder / f"{subject}_{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return root
