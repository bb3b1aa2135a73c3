"""A mini sweep with a tiny BERT through the real train.py, Hydra multirun, both launchers.

The grid is 2 variants (a learning rate that trains, one that diverges and fails) x 2 GLUE tasks
(official-layout files written by the tests) x seeds. It checks: every cell gets its own
deterministic run dir with metrics.json, the diverging cells are recorded as failed while the
others complete, a second `run` launches nothing, and the report equals a hand aggregation of the
metrics.json files.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from regbench.sweep.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


def write_sweep(path: Path, tiny_bert: Path, glue_root: Path, cache: Path, tasks: tuple[str, ...], seeds: list[int]) -> Path:
    sweep = {
        "name": "tiny",
        "title": "Tiny end-to-end sweep",
        "axes": {
            "variant": [
                {"label": "base", "overrides": {"optim.lr": 1.0e-3}},
                {"label": "diverge", "overrides": {"optim.lr": 1.0e30, "optim.grad_clip": 0}},
            ],
            "task": [
                {"label": f"glue/{t}", "overrides": {"task": f"glue/{t}", "task.data_dir": str(glue_root / t)}}
                for t in tasks
            ],
            "seed": seeds,
        },
        "fixed": {
            "backbone": "bert-base-cased", "backbone.path": str(tiny_bert), "logger": "csv",
            "data.batch_size": 16, "data.max_length": 32, "data.cache_dir": str(cache),
            "optim.warmup_ratio": 0.0, "checkpoint.enabled": False,
        },
        "scales": {"full": {"fixed": {"trainer.max_epochs": 3}}, "mini": {"fixed": {"trainer.max_epochs": 1}}},
        "report": {"rows": ["variant"], "column": "task", "metric": "validation/accuracy"},
    }
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def hand_aggregate(sweep_dir: Path) -> dict[tuple[str, str], dict]:
    values: dict[tuple[str, str], list[float]] = {}
    failed: dict[tuple[str, str], int] = {}
    for path in sweep_dir.glob("*/metrics.json"):
        variant, task, _seed = path.parent.name.split("__")
        key = (variant, task.replace("-", "/", 1))
        record = json.loads(path.read_text())
        if record["status"] == "ok":
            values.setdefault(key, []).append(100 * record["best"]["validation/accuracy"])
        elif record["status"] == "failed":
            failed[key] = failed.get(key, 0) + 1
    return {k: {"values": v, "failed": failed.get(k, 0)} for k, v in values.items()} | {
        k: {"values": [], "failed": n} for k, n in failed.items() if k not in values
    }


# submitit_local starts one process per job (each imports torch): keep its grid at two jobs.
@pytest.mark.parametrize("launcher, tasks, seeds", [("basic", ("rte", "sst2"), [1, 2]), ("submitit_local", ("rte",), [1])])
def test_mini_sweep_end_to_end(launcher, tasks, seeds, tiny_bert, glue_root, tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "tiny.yaml", tiny_bert, glue_root, tmp_path / "cache", tasks, seeds)
    sweep_dir = tmp_path / "runs"
    args = ["--scale", "mini", "--project-dir", str(REPO), "--sweep-dir", str(sweep_dir)]
    rc = cli_main(["run", str(sweep_file), *args, f"hydra/launcher={launcher}"])
    out = capsys.readouterr().out
    n = 2 * len(tasks) * len(seeds)
    assert rc == 1, out  # the diverging cells failed
    assert f"{n // 2}/{n} ok, {n // 2} failed, 0 missing" in out

    run_dirs = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
    assert run_dirs == sorted(f"{v}__glue-{t}__seed{s}" for v in ("base", "diverge") for t in tasks for s in seeds)
    for name in run_dirs:
        record = json.loads((sweep_dir / name / "metrics.json").read_text())
        config = yaml.safe_load((sweep_dir / name / "config.yaml").read_text())
        assert record["seed"] == int(name[-1]) and config["trainer"]["max_epochs"] == 1
        if name.startswith("diverge"):
            assert record["status"] == "failed" and "non-finite training loss" in record["error"]
        else:
            assert record["status"] == "ok" and record["task"] == name.split("__")[1][5:]

    # resume: everything that can finish has finished; only the failed cells are launched again
    rc = cli_main(["run", str(sweep_file), *args, "--dry-run"])
    assert f"{n // 2} done (skipped), {n // 2} to launch" in capsys.readouterr().out

    assert cli_main(["report", str(sweep_file), *args]) == 0
    capsys.readouterr()
    hand = hand_aggregate(sweep_dir)
    with open(sweep_dir / "report" / "tiny_mini.csv") as f:
        rows = {(r["variant"], r["task"]): r for r in csv.DictReader(f)}
    assert set(rows) == set(hand)
    for key, expected in hand.items():
        row = rows[key]
        assert int(row["n"]) == len(expected["values"]) and int(row["failed"]) == expected["failed"]
        if expected["values"]:
            assert float(row["mean"]) == pytest.approx(statistics.fmean(expected["values"]), abs=1e-9)
            assert float(row["max"]) == pytest.approx(max(expected["values"]), abs=1e-9)
            if len(expected["values"]) > 1:
                assert float(row["std"]) == pytest.approx(statistics.stdev(expected["values"]), abs=1e-9)
        else:
            assert row["mean"] == ""
    md = (sweep_dir / "report" / "tiny_mini.md").read_text()
    assert "| diverge | " + " | ".join(["—"] * len(tasks)) + " |" in md
    assert f"| diverge__glue-{tasks[0]}__seed1 | NonFiniteLossError: non-finite training loss" in md
