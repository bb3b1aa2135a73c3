"""Tokenization and batching per task kind (classification, regression, generation ...).

An :class:`Encoding` turns raw rows into model inputs once (``datasets.map(batched=True)``, cached
on disk by the datamodule) and pads each batch dynamically to its longest row. Each task kind names
its encoding factory ``fn(tokenizer, task_cfg, max_length) -> Encoding`` by dotted path in
``task_kinds.<kind>.encoding`` (``conf/config.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Encoding:
    """How one task kind is tokenized and collated.

    ``encode(batch) -> dict`` maps a batch of raw rows to new columns (raw columns are dropped
    unless listed in ``keep_columns``, which evaluation splits keep for scoring);
    ``collate(rows) -> batch`` pads a list of encoded rows.
    ``version`` is part of the tokenization cache key: bump it when ``encode`` changes.
    """

    encode: Callable[[dict[str, list]], dict[str, list]]
    collate: Callable[[list[dict]], dict]
    keep_columns: tuple[str, ...] = ()
    version: str = "1"


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


class Seq2SeqCollator:
    """Pads sources and targets (labels with -100) and passes evaluation fields through as lists.

    ``references``, ``source`` and ``example_id`` (evaluation rows) are not model inputs: they are
    taken out before padding and returned unchanged, for scoring and the predictions file.
    """

    PASSTHROUGH = ("references", "source", "example_id")

    def __init__(self, tokenizer: Any):
        from transformers import DataCollatorForSeq2Seq

        self.pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)

    def __call__(self, rows: list[dict]) -> dict:
        extra = {k: [row.pop(k) for row in rows] for k in self.PASSTHROUGH if k in rows[0]}
        return {**self.pad(rows), **extra}


def seq2seq_encoding(tokenizer: Any, task_cfg: Any, max_length: int) -> Encoding:
    """Source (``task.max_source_length`` or ``max_length`` tokens) and target
    (``task.generation.max_target_length``) for teacher-forced training.

    BERT-style tokenizers (a [CLS] start token, no BOS) lose the leading [CLS] on targets: in a
    BERT2BERT model the decoder start token is [CLS] already, so the decoder learns to emit text, not [CLS].
    """
    source_length = int(task_cfg.get("max_source_length") or max_length)
    target_length = int(task_cfg.generation.max_target_length)
    strip_cls = tokenizer.bos_token_id is None and tokenizer.cls_token_id is not None

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out = dict(tokenizer(batch["source"], truncation=True, max_length=source_length))
        labels = tokenizer(text_target=batch["target"], truncation=True, max_length=target_length)["input_ids"]
        if strip_cls:
            labels = [ids[1:] if ids and ids[0] == tokenizer.cls_token_id else ids for ids in labels]
        out["labels"] = labels
        return out

    return Encoding(encode=encode, collate=Seq2SeqCollator(tokenizer), keep_columns=Seq2SeqCollator.PASSTHROUGH,
                    version="seq2seq-1")
