"""Activation memory of one training step of a Qwen2.5-0.5B-shaped decoder, with and without
``backbone.gradient_checkpointing`` (regbench.models.causal_lm.prepare_decoder_model), and the step-time
ratio, measured side by side in one run on CPU.

Memory is counted exactly, device-independently: the bytes of every tensor autograd saves for backward
(``torch.autograd.graph.saved_tensors_hooks``, each storage once), which is what activation memory is.
The model has Qwen2.5-0.5B's widths (hidden 896, 14 heads / 2 KV heads, FFN 4864, tied 151,936-token
embeddings) with ``--layers`` of its 24 blocks (random weights: memory and speed do not depend on them);
the per-block figure extrapolates to 24 blocks. Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/decoder_memory.py --layers 2 --length 512 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from regbench.models.causal_lm import prepare_decoder_model

QWEN25_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2,
              "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 4096}


class SavedBytes:
    """Sum of the bytes of the distinct storages autograd saves during a forward pass."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def build(layers: int, checkpointing: bool):
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(num_hidden_layers=layers, **QWEN25_05B),
                                             attn_implementation="sdpa")
    params = {id(p) for p in model.parameters()}

    class Tok:  # what prepare_decoder_model reads
        pad_token_id = eos_token_id = 151643

    prepare_decoder_model(model, Tok(), OmegaConf.create({"gradient_checkpointing": checkpointing}))
    if checkpointing:
        model.config.use_cache = False
    return model.train(), params


def step(model, params: set[int], batch: dict) -> tuple[int, float]:
    counter = SavedBytes()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in params and not isinstance(tensor, torch.nn.Parameter):
            counter.pack(tensor)
        return tensor

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ids = torch.randint(0, 151000, (args.batch, args.length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    models = {flag: build(args.layers, flag) for flag in (False, True)}
    saved, times = {}, {False: [], True: []}
    for _ in range(args.rounds):  # alternating, so load from other users hits both sides alike
        for flag, (model, params) in models.items():
            saved[flag], seconds = step(model, params, batch)
            times[flag].append(seconds)
    # Per block: the two-layer difference (embeddings and the vocabulary-sized logits are outside the blocks).
    small = {flag: step(*build(1, flag), batch)[0] for flag in (False, True)}
    per_block = {flag: (saved[flag] - small[flag]) / max(args.layers - 1, 1) for flag in (False, True)}
    outside = {flag: small[flag] - per_block[flag] for flag in (False, True)}
    mib = 2 ** 20
    print(f"Qwen2.5-0.5B widths, {args.layers} blocks, batch {args.batch} x {args.length} tokens, fp32, CPU")
    for flag in (False, True):
        name = "checkpointing" if flag else "plain"
        full = outside[flag] + 24 * per_block[flag]
        print(f"{name:>13}: saved for backward {saved[flag] / mib:8.1f} MiB; per block {per_block[flag] / mib:7.1f} MiB; "
              f"outside blocks {outside[flag] / mib:7.1f} MiB; 24 blocks -> {full / mib:8.1f} MiB; "
              f"step {min(times[flag]):.2f} s (min of {args.rounds})")
    ratio_block = per_block[True] / per_block[False]
    ratio_time = min(times[True]) / min(times[False])
    full = {flag: outside[flag] + 24 * per_block[flag] for flag in (False, True)}
    print(f"ratios (checkpointing / plain): activation memory per block {ratio_block:.3f}, "
          f"24-block model {full[True] / full[False]:.3f}; step time {ratio_time:.2f}")


if __name__ == "__main__":
    main()
