"""Start-up cost of the command line: ``python train.py --help`` and ``python train.py --cfg job``.

    python benchmarks/startup.py [--repeats 5] [--python .venv/bin/python]

Each command runs ``--repeats`` times as a fresh process from the repo root (commands interleaved
round by round, so load drifts on a shared machine hit all of them alike); the median wall time
is printed next to that of a bare ``python -c pass`` (the interpreter's own start-up). Then each
command runs once more under a small wrapper that reports, at exit, whether torch, transformers,
lightning or datasets were imported (``sys.modules``), and once under ``python -X importtime`` to
list the slowest top-level imports. Target: under 3 s, no torch/transformers import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "lightning", "datasets", "peft")
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "train.py --help": ["train.py", "--help"],
    "train.py --cfg job": ["train.py", "--cfg", "job"],
    "train.py --cfg job experiment=demo_minilm_sst2 regularizer=tlm": [
        "train.py", "--cfg", "job", "experiment=demo_minilm_sst2", "regularizer=tlm"],
}
# Runs train.py as __main__ and reports at exit (Hydra leaves through sys.exit after --help).
WRAPPER = (
    "import atexit, json, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('HEAVY ' + json.dumps({m: m in sys.modules for m in %r}) + '\\n'))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
) % (HEAVY,)


def env() -> dict[str, str]:
    base = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
            "TOKENIZERS_PARALLELISM": "false"}
    src = str(REPO / "src")
    return {**os.environ, **base, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def timed(python: str, argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([python, *argv], cwd=REPO, env=env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def heavy_imports(python: str, argv: list[str]) -> dict[str, bool]:
    proc = subprocess.run([python, "-c", WRAPPER, *argv], cwd=REPO, env=env(), capture_output=True, text=True)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY ")]
    if not lines:
        raise SystemExit(f"wrapper run of {argv} reported nothing:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("HEAVY "):])


def slowest_imports(python: str, argv: list[str], top: int) -> list[tuple[str, float]]:
    """Top-level imports (``-X importtime``) by cumulative time, in seconds."""
    proc = subprocess.run([python, "-X", "importtime", *argv], cwd=REPO, env=env(), capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith(" ") or name.startswith("  "):  # keep top-level only (one leading space)
            continue
        rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the project's venv")
    parser.add_argument("--top", type=int, default=6, help="slowest top-level imports to list")
    args = parser.parse_args()

    for argv in COMMANDS.values():  # warm the page cache / .pyc files once, untimed
        timed(args.python, argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            times[name].append(timed(args.python, argv))

    print(f"{os.cpu_count()} CPUs, {args.repeats} repeats (interleaved), python {sys.version.split()[0]}")
    print("\n| command | median wall s | min | max | imports torch / transformers / lightning / datasets |")
    print("|---|---|---|---|---|")
    for name, argv in COMMANDS.items():
        t = times[name]
        heavy = "" if argv[0] == "-c" else " / ".join("yes" if v else "no"
                                                      for k, v in heavy_imports(args.python, argv).items()
                                                      if k != "peft")
        print(f"| `{name}` | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} | {heavy or '-'} |")
    for name in ("train.py --help", "train.py --cfg job"):
        ok = statistics.median(times[name]) < 3.0
        print(f"{name}: {statistics.median(times[name]):.2f} s median (target < 3 s: {'met' if ok else 'NOT met'})")
    print("\nslowest top-level imports of `train.py --cfg job` (-X importtime, cumulative s):")
    for name, seconds in slowest_imports(args.python, COMMANDS["train.py --cfg job"], args.top):
        print(f"  {name:<32} {seconds:.3f}")


if __name__ == "__main__":
    main()
