"""Tokenization and batching for decoder-only (causal LM) fine-tuning: data-to-text and instruction tuning.

One training sequence is ``prompt + response + eos``; ``labels`` copy the response and eos and are
-100 on the prompt and on padding, so the loss covers the target tokens only (the model shifts the
labels itself). The prompt is tokenized with the tokenizer's own special tokens (Llama's BOS), the
response without them, and the two are concatenated, so the prompt's tokens in training are exactly
the tokens generation starts from.

Padding: training sequences on the right (positions start at 0 for every row, as in pre-training);
the prompts generation starts from on the left (``prompt_input_ids`` / ``prompt_attention_mask``),
so every row's next token is at the last position.
"""

from __future__ import annotations

from typing import Any

import torch

from regbench.data.encoding import Encoding

# Data-to-text prompt for decoder-only backbones (``task.prompt`` overrides it); the linearized input,
# then a line break after which the model writes the text (our choice; the papers fine-tune seq2seq).
D2T_PROMPT = "{source}\n"
IGNORE = -100


def pad(sequences: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Pad lists of ids to one tensor, on the right (training) or the left (generation prompts)."""
    width = max((len(s) for s in sequences), default=0)
    rows = [([value] * (width - len(s)) + list(s)) if left else (list(s) + [value] * (width - len(s)))
            for s in sequences]
    return torch.tensor(rows, dtype=torch.long)


def prompt_and_response(tokenizer: Any, prompts: list[str], responses: list[str], prompt_length: int,
                        response_length: int) -> dict[str, list]:
    """``input_ids`` = prompt + response + eos, ``labels`` = -100 on the prompt, and ``prompt_ids``.

    The prompt is cut to its first ``prompt_length`` tokens (as the tokenizer truncates; a cut prompt
    loses its end, so set the lengths to fit the data); the response keeps ``response_length - 1``
    tokens plus eos."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no eos token: a causal LM "
                         f"fine-tuned without one never learns to stop")
    prompt_ids = tokenizer(prompts, truncation=True, max_length=prompt_length)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False, truncation=True,
                             max_length=max(response_length - 1, 1))["input_ids"]
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "prompt_ids": []}
    for prompt, response in zip(prompt_ids, response_ids):
        target = list(response) + [eos]
        out["input_ids"].append(list(prompt) + target)
        out["attention_mask"].append([1] * (len(prompt) + len(target)))
        out["labels"].append([IGNORE] * len(prompt) + target)
        out["prompt_ids"].append(list(prompt))
    return out


class CausalLMCollator:
    """Right-pads ``input_ids``/``attention_mask``/``labels`` (-100), left-pads ``prompt_ids`` into
    ``prompt_input_ids``/``prompt_attention_mask``, and passes evaluation fields through as lists."""

    PASSTHROUGH = ("references", "source", "example_id")

    def __init__(self, tokenizer: Any):
        self.pad_id = int(tokenizer.pad_token_id)

    def __call__(self, rows: list[dict]) -> dict:
        batch = {k: [row[k] for row in rows] for k in self.PASSTHROUGH if k in rows[0]}
        if "example_id" in batch:
            batch["example_id"] = torch.tensor(batch["example_id"], dtype=torch.long)
        ids = [row["input_ids"] for row in rows]
        batch["input_ids"] = pad(ids, self.pad_id)
        batch["attention_mask"] = pad([[1] * len(s) for s in ids], 0)
        batch["labels"] = pad([row["labels"] for row in rows], IGNORE)
        if "prompt_ids" in rows[0]:
            prompts = [row["prompt_ids"] for row in rows]
            batch["prompt_input_ids"] = pad(prompts, self.pad_id, left=True)
            batch["prompt_attention_mask"] = pad([[1] * len(s) for s in prompts], 0, left=True)
        return batch


def causal_lm_encoding(tokenizer: Any, task_cfg: Any, max_length: int) -> Encoding:
    """Data-to-text on a decoder-only backbone: prompt = ``task.prompt`` (default ``"{source}\\n"``) with
    the linearized input, truncated to ``task.max_source_length`` or ``max_length`` tokens; target =
    the reference text (``task.generation.max_target_length`` tokens, eos included)."""
    template = str(task_cfg.get("prompt") or D2T_PROMPT)
    if "{source}" not in template:
        raise ValueError(f"task.prompt={template!r} must contain {{source}} (where the linearized input goes)")
    source_length = int(task_cfg.get("max_source_length") or max_length)
    target_length = int(task_cfg.generation.max_target_length)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        prompts = [template.replace("{source}", s) for s in batch["source"]]
        return prompt_and_response(tokenizer, prompts, batch["target"], source_length, target_length)

    return Encoding(encode=encode, collate=CausalLMCollator(tokenizer), keep_columns=CausalLMCollator.PASSTHROUGH,
                    version=f"causal-1:{template}")
