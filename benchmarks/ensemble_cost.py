"""Cost of LoRA Dropout's test-time ensemble vs one evaluation pass, in one run.

For N in {1, 2, 4, 8}, times ``LoRADropout.predict_logits`` (N masked passes averaged; N=1 is the
plain deterministic pass) on the same model and batch in eval mode / no_grad, interleaved round
by round, and prints median time / median time of one plain ``model(**batch)`` pass. The target
is about N x (the ensemble adds no work beyond its N passes).

    PYTHONPATH=src python benchmarks/ensemble_cost.py [--layers 12 --hidden 768 --rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from regbench.regularizers import build_regularizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = BertConfig(hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                        num_labels=2)
    torch.manual_seed(0)
    target = "regbench.regularizers.lora_dropout.LoRADropout"
    regs = {n: build_regularizer({"lora_dropout": {"_target_": target, "p": 0.1, "ensemble_passes": n}})
            for n in args.passes}
    # One model; each regularizer's masks are installed on its own copy of the same weights.
    base_state = BertForSequenceClassification(config).state_dict()
    models = {}
    for n, reg in regs.items():
        model = BertForSequenceClassification(config)
        model.load_state_dict(base_state)
        models[n] = reg.apply(model).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (args.batch, args.length), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def timed(fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        return time.perf_counter() - start

    plain_model = models[args.passes[0]]
    jobs = {"plain": lambda: plain_model(**batch).logits}
    jobs.update({f"N={n}": (lambda n=n: regs[n].predict_logits(models[n], batch)) for n in args.passes})
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for fn in jobs.values():  # warm-up
        timed(fn)
    for _ in range(args.rounds):
        for key, fn in jobs.items():
            times[key].append(timed(fn))

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"BERT {args.layers}x{args.hidden} + LoRA r=8 (query,value), eval batch {args.batch}x{args.length}, "
          f"{args.threads} threads, {args.rounds} rounds, torch {torch.__version__}")
    print(f"one plain eval pass: {median['plain']:.3f} s")
    for n in args.passes:
        print(f"ensemble N={n}: {median[f'N={n}']:.3f} s = {median[f'N={n}'] / median['plain']:.2f}x one pass "
              f"(target ~{n}x)")


if __name__ == "__main__":
    main()
