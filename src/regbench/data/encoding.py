"""Tokenization and batching per task kind (classification, regression, generation ...).

An :class:`Encoding` turns raw rows into model inputs once (``datasets.map(batched=True)``, cached
on disk by the datamodule) and pads each batch dynamically to its longest row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

ENCODINGS: dict[str, Callable[[Any, Any, int], "Encoding"]] = {}


@dataclass
class Encoding:
    """How one task kind is tokenized and collated.

    ``encode(batch) -> dict`` maps a batch of raw rows to new columns (raw columns are dropped
    unless listed in ``keep_columns``); ``collate(rows) -> batch`` pads a list of encoded rows.
    ``version`` is part of the tokenization cache key: bump it when ``encode`` changes.
    """

    encode: Callable[[dict[str, list]], dict[str, list]]
    collate: Callable[[list[dict]], dict]
    keep_columns: tuple[str, ...] = ()
    version: str = "1"


def register_encoding(*kinds: str):
    """Decorator: ``fn(tokenizer, task_cfg, max_length) -> Encoding`` for the given task kinds."""

    def wrap(fn):
        for kind in kinds:
            ENCODINGS[kind] = fn
        return fn

    return wrap


def build_encoding(tokenizer: Any, task_cfg: Any, max_length: int) -> Encoding:
    """The registered encoding of ``task.kind``."""
    if task_cfg.kind not in ENCODINGS:
        raise KeyError(f"no encoding registered for task.kind={task_cfg.kind!r}; valid: {sorted(ENCODINGS)}")
    return ENCODINGS[task_cfg.kind](tokenizer, task_cfg, max_length)


@register_encoding("classification", "regression")
def sequence_classification_encoding(tokenizer: Any, task_cfg: Any, max_length: int) -> Encoding:
    """Single sentences or sentence pairs (``task.text_keys``), truncated to ``max_length``."""
    from transformers import DataCollatorWithPadding

    keys = list(task_cfg.text_keys)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[k] for k in keys]
        out = tokenizer(*texts, truncation=True, max_length=max_length)
        out["labels"] = batch["label"]
        return dict(out)

    return Encoding(encode=encode, collate=DataCollatorWithPadding(tokenizer), version="cls-1")
