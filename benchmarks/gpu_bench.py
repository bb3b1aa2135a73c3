"""GPU throughput per regularizer vs ``transformers.Trainer`` in bf16 (issue 15); run by ``benchmarks/gpu.sh``.

    benchmarks/gpu.sh                  # on a CUDA machine: < 8 minutes
    benchmarks/gpu.sh --dry --data DIR # the same path on CPU with a tiny random BERT (tests/test_gpu_bench_dry.py)

For each model (a randomly initialised BERT-base-sized model, and the packaged all-MiniLM-L6-v2) it
trains, one fresh process per configuration (``benchmarks/throughput.py`` children, run one after the
other): the Trainer's default recipe (``bf16=True``, its ``RandomSampler``) and regbench with its
default settings (``hardware=gpu_bf16``: ``bf16-mixed``; ``data.group_by_length=true``) for the
regularizers ``none``, ``tlm``, ``drophead``, ``mixout`` (and ``rdrop`` when
``conf/regularizer/rdrop.yaml`` exists). Printed per configuration: steady-state samples/s, the ratio
to the Trainer, padded/real tokens, model FLOPs utilisation (MFU: training FLOPs of the *real* tokens,
6 x non-embedding parameters per token plus 12 x layers x hidden x sequence length for attention,
over the GPU's peak ``--peak-tflops``; the same with padded tokens is the hardware's view), the peak
CUDA memory, and which SDPA kernel runs with the attention mask each configuration builds (TLM's
boolean per-example masks included: torch's own ``can_use_*_attention`` checks on the exact
tensors of the first training call).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import throughput as tp  # noqa: E402  (benchmarks/throughput.py: the children, the data reader)


def regularizers() -> list[str]:
    names = ["none", "tlm", "drophead", "mixout"]
    if (REPO / "conf" / "regularizer" / "rdrop.yaml").is_file():
        names.append("rdrop")
    return names


def flops_per_token(model_dir: str, seq_len: float) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward): 6 x non-embedding parameters +
    12 x layers x hidden x sequence length (attention scores and weighted sum)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, layers, inter = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    per_layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h  # attention, FFN, 2 LayerNorms
    return 6 * layers * per_layer + 12 * layers * h * seq_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="CPU, tiny random BERT, 3 steps: checks the path only")
    parser.add_argument("--data", default=tp.default_data_root())
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--train-rows", type=int, default=6400)
    parser.add_argument("--models", nargs="+", default=["bert-base-config", "minilm"])
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the GPU (H100/H200 SXM: 989)")
    parser.add_argument("--json", help="write every result to this file")
    args = parser.parse_args()

    base = argparse.Namespace(
        model="minilm", task=args.task, data=args.data, batch=args.batch, length=args.length, steps=args.steps,
        warmup_steps=args.warmup_steps, lr=5e-5, seed=42, trainer_optim="adamw_torch_fused", device="cuda",
        threads=None, profile=0, trainer_shuffle=False, regbench_adamw=None, train_rows=args.train_rows,
        trainer_sampling="random", regbench_override=None, regularizer="none", precision="bf16", sdpa_probe=True)
    models = args.models
    if args.dry:
        base.device, base.precision, base.steps, base.warmup_steps, base.train_rows = "cpu", "32", 3, 1, 24
        base.batch, base.length = 8, 32
        models = ["tiny-config"]
    else:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry for the CPU path")
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-gpu-") as tmp:
        for model in models:
            run = copy.copy(base)
            run.model = model
            model_dir = tp.prepare_model_dir(run, Path(tmp))
            sides = [("trainer", "trainer")] + [("regbench", reg) for reg in regularizers()]
            baseline = None
            for kind, reg in sides:
                child = copy.copy(run)
                child.regularizer = reg if kind == "regbench" else "none"
                res = tp.run_alone(kind, child, model_dir, Path(tmp))
                seq = res["mean_padded_length"]
                per_token = flops_per_token(model_dir, seq)
                achieved = res["real_tokens_per_s"] * per_token / 1e12
                hardware = res["padded_tokens_per_s"] * per_token / 1e12
                row = {"model": model, "side": kind if kind == "trainer" else f"regbench {reg}",
                       "samples_per_s": res["samples_per_s"], "padded_per_real": res["padded_per_real"],
                       "tflops_real": achieved, "tflops_padded": hardware,
                       "mfu": achieved / args.peak_tflops, "mfu_padded": hardware / args.peak_tflops,
                       "peak_mib": res.get("cuda_max_allocated_mib"), "sdpa": res.get("sdpa"),
                       "startup_s": res["startup_s"]}
                if kind == "trainer":
                    baseline = res["samples_per_s"]
                row["vs_trainer"] = res["samples_per_s"] / baseline
                results.append(row)
                print(json.dumps(row, default=str), flush=True)
    print("\n| model | run | samples/s | vs Trainer | padded/real | MFU real tokens (padded) | peak CUDA MiB | "
          "SDPA mask -> kernel |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        sdpa = r["sdpa"] or {}
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        print(f"| {r['model']} | {r['side']} | {r['samples_per_s']:.1f} | {r['vs_trainer']:.2f}x | "
              f"{r['padded_per_real']:.2f} | {100 * r['mfu']:.1f}% ({100 * r['mfu_padded']:.1f}%) | {peak} | "
              f"{sdpa.get('mask')} -> {sdpa.get('runs')} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s{' (dry run: CPU, tiny model; figures mean nothing)' if args.dry else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
