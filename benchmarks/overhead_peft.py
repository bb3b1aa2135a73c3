"""Train-step overhead of Mixout vs ``none`` and LoRA Dropout vs plain LoRA, in one run.

Times one AdamW training step (forward, backward, optimizer step through the regularizer's
hooks) for each configuration, interleaving the configurations round by round so they share
machine conditions, and reports median ratios. Peak memory: each configuration runs a few steps
in its own subprocess and reports its peak resident set growth (VmHWM minus the RSS before the
model is built); the ratio of those is printed.

Model: a BERT-base-sized classifier built from its config (random weights; speed does not
depend on them), batch 8 x 128 tokens (the Mixout/TLM GLUE recipe).

    PYTHONPATH=src python benchmarks/overhead_peft.py [--layers 12 --hidden 768 --rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from regbench.regularizers import build_regularizer

CONFIGS = {  # the regularizer node as conf/regularizer/<name>.yaml composes it
    "none": {"none": {"_target_": "regbench.regularizers.none.NoRegularizer"}},
    "mixout": {"mixout": {"_target_": "regbench.regularizers.mixout.Mixout", "p": 0.9}},
    "lora": {"lora": {"_target_": "regbench.regularizers.lora.LoRA", "r": 8, "p": 0.1}},
    "lora_dropout": {"lora_dropout": {"_target_": "regbench.regularizers.lora_dropout.LoRADropout", "r": 8, "p": 0.1}},
}
PAIRS = [("mixout", "none", 1.3), ("lora_dropout", "lora", 1.1)]


def build(name: str, args: argparse.Namespace):
    """Regularizer, model and AdamW optimizer for one configuration."""
    reg = build_regularizer(CONFIGS[name])
    heads = max(1, args.hidden // 64)
    config = BertConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=heads,
                        intermediate_size=4 * args.hidden, num_labels=2)
    reg.configure_backbone_config(config)
    torch.manual_seed(0)
    model = reg.apply(BertForSequenceClassification(config)).train()
    opt = torch.optim.AdamW(reg.param_groups(model, 2e-5, 0.01), lr=2e-5)
    return reg, model, opt


def batch_for(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (args.batch, args.length), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, 2, (args.batch,), generator=gen)}


def train_step(reg, model, opt, batch) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    reg.training_loss(model, batch).backward()
    opt.step()
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(name: str, args: argparse.Namespace) -> None:
    """Run in a subprocess: peak RSS growth of building + 3 training steps, printed as JSON."""
    batch = batch_for(args)
    before = _status_kib("VmRSS")
    reg, model, opt = build(name, args)
    for _ in range(3):
        train_step(reg, model, opt, batch)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child(args.memory_child, args)

    batch = batch_for(args)
    setups = {name: build(name, args) for name in CONFIGS}
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for name, setup in setups.items():  # warm-up
        train_step(*setup, batch)
    for _ in range(args.rounds):
        for name, setup in setups.items():
            times[name].append(train_step(*setup, batch))
    del setups

    passthrough = [a for a in sys.argv[1:]]
    peak = {}
    for name in CONFIGS:
        out = subprocess.run([sys.executable, __file__, *passthrough, "--memory-child", name],
                             check=True, capture_output=True, text=True).stdout
        peak[name] = json.loads(out.strip().splitlines()[-1])["peak_mib"]

    print(f"BERT {args.layers}x{args.hidden}, batch {args.batch}x{args.length}, {args.threads} threads, "
          f"{args.rounds} rounds, torch {torch.__version__}")
    print(f"{'config':<14}{'step s (median)':>16}{'peak MiB':>10}")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name in CONFIGS:
        print(f"{name:<14}{median[name]:>16.3f}{peak[name]:>10.0f}")
    for method, base, target in PAIRS:
        ratio = median[method] / median[base]
        mem = peak[method] / peak[base]
        print(f"{method} / {base}: step time {ratio:.2f}x (target <= {target}x), peak memory {mem:.2f}x")


if __name__ == "__main__":
    main()
