"""`python train.py` as users run it: DDP on CPU (2 gloo processes), multirun, SIGKILL + restart, submitit.

Subprocesses on purpose: Lightning starts DDP ranks by re-running the command line, submitit pickles
the job, and a SIGKILL must hit a real process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def command(tiny_bert, glue_root, tmp_path):
    """`python train.py <tiny run overrides> <extra>` and the environment to run it in."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1",
           "REGBENCH_OUTPUT": str(tmp_path / "default_output_root")}  # where stray run/sweep dirs would go

    def make(*extra: str) -> tuple[list[str], dict]:
        flags = [a for a in extra if a.startswith("-")]  # -m must precede the overrides
        extra = tuple(a for a in extra if not a.startswith("-"))
        return [sys.executable, "train.py", *flags, "task=glue/rte", f"task.data_dir={glue_root / 'rte'}",
                f"backbone.path={tiny_bert}", "logger=csv", "data.max_length=32", f"data.cache_dir={tmp_path / 'cache'}",
                "optim.lr=1e-3", "optim.warmup_ratio=0.0", "trainer.max_epochs=1", *extra], env

    return make


def _run(cmd_env, timeout=240) -> subprocess.CompletedProcess:
    """Run to completion; on timeout kill the whole process group (DDP ranks, submitit workers) and fail."""
    cmd, env = cmd_env
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {stdout[-2000:]}{stderr[-2000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_ddp_cpu_multirun_trains_every_job_on_two_ranks_in_its_own_dir(command, tmp_path):
    from regbench.train import run
    from tests.conftest import compose_config

    single = tmp_path / "single"  # the same job on one process, for the record's shape
    cmd, _ = command("checkpoint.enabled=false")
    run(compose_config([a for a in cmd[2:]], single))

    sweep = tmp_path / "sweep"
    _run(command("-m", "hardware=ddp_cpu", "seed=1,2", f"hydra.sweep.dir={sweep}"))
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]  # one dir per job, no dirs from the ranks
    for job, seed in zip(jobs, (1, 2)):
        record = _record(job)
        assert record["status"] == "ok" and record["seed"] == seed and record["output_dir"] == str(job)
        assert set(record) - {"resumes"} == set(_record(single)) and set(record["final"]) == set(_record(single)["final"])
        assert record["train_steps"] == 3  # 48 rows / (2 ranks * batch 8): each rank saw half an epoch
        assert record["train_samples"] == 48
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran this job, in this dir
        assert (job / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "default_output_root").exists()  # the ranks started no sweep or run of their own


def test_sigkilled_run_resumes_from_its_last_checkpoint_with_the_same_command(command, tmp_path):
    import torch

    run_dir = tmp_path / "run"
    cmd, env = command("trainer.max_epochs=12", "checkpoint.every_n_train_steps=3", f"hydra.run.dir={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < killed_at < 72 and _record(run_dir)["status"] == "running"

    out = _run((cmd, env)).stdout
    record = _record(run_dir)
    assert record["status"] == "ok" and record["error"] is None
    assert record["resumes"][0]["step"] == killed_at  # continued, not restarted
    assert record["train_steps"] == 72  # 12 epochs * 6 steps, in total
    assert [row["epoch"] for row in record["history"]] == list(range(12))  # each validation once
    assert [row["step"] for row in record["history"]] == [6 * (e + 1) for e in range(12)]
    assert set(record["final"]) == {"validation/accuracy"} and record["best_step"] > 0
    assert "status=ok" in out


def test_submitit_local_launcher_runs_a_two_job_sweep(command, tmp_path):
    sweep = tmp_path / "sweep"
    _run(command("-m", "launcher=local", "seed=5,6", "checkpoint.enabled=false", f"hydra.sweep.dir={sweep}"))
    for job, seed in (("0", 5), ("1", 6)):
        record = _record(sweep / job)
        assert record["status"] == "ok" and record["seed"] == seed and "validation/accuracy" in record["final"]
    assert any((sweep / ".submitit").iterdir())  # the jobs went through submitit, one process each


@pytest.mark.slow
def test_layerdrop_trains_under_ddp_cpu_with_unused_parameters_allowed(command, tmp_path):
    """LayerDrop's skipped blocks give no gradients: plain DDP would fail at the next step ("Expected to
    have finished reduction in the prior iteration"); the run turns on find_unused_parameters itself."""
    out = tmp_path / "layerdrop"
    result = _run(command("hardware=ddp_cpu", "regularizer=layerdrop", "regularizer.layerdrop.p=0.5",
                          "checkpoint.enabled=false", f"hydra.run.dir={out}"))
    record = _record(out)
    assert record["status"] == "ok" and record["train_steps"] == 3 and record["train_samples"] == 48
    assert record["regularizer_params"]["methods"]["layerdrop"]["p"] == 0.5
    assert "ddp_find_unused_parameters_true" in result.stdout + result.stderr + (out / "train.log").read_text()
