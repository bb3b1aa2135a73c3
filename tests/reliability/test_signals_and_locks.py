"""Issue 13, items 2 and 4: one run per run dir; SIGTERM/SIGINT end a run as `interrupted`, non-zero, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_config
from tests.reliability.conftest import record


def _signal_at_step(step: int, signum: int):
    import lightning as L

    class SendSignal(L.Callback):
        sent = False

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == step and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signum)

    return SendSignal()


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_records_interrupted_with_the_step_and_a_checkpoint_to_resume_from(train, inject, tmp_path, signum):
    """SIGTERM exited 0 leaving `status: running`; SIGINT left `running`."""
    import torch

    from regbench.interrupts import RunInterrupted

    inject(_signal_at_step(3, signum))
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted) as stopped:
        train(run_dir)
    assert stopped.value.code == 128 + signum  # non-zero exit status: 143 (SIGTERM), 130 (SIGINT)
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and rec["train_steps"] == 3
    assert rec["interruptions"] == [{"signal": signal.Signals(signum).name, "cause": f"signal {signal.Signals(signum).name}",
                                     "step": 3, "checkpoint": str(run_dir / "checkpoints" / "last.ckpt")}]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the process's handlers are restored

    inject(_signal_at_step(-1, signum))  # no signal this time
    train(run_dir)
    rec = record(run_dir)
    assert rec["status"] == "ok" and rec["resumes"][0]["step"] == 3 and rec["train_steps"] == 6
    assert [row["step"] for row in rec["history"]] == [6]


def test_sigterm_before_training_is_recorded_too(train, monkeypatch, tmp_path):
    from regbench.data.datamodule import TaskDataModule
    from regbench.interrupts import RunInterrupted

    def killed_while_tokenizing(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(TaskDataModule, "prepare_data", killed_while_tokenizing)
    with pytest.raises(RunInterrupted):
        train(tmp_path / "run")
    rec = record(tmp_path / "run")
    assert rec["status"] == "interrupted" and rec["interruptions"][0]["step"] is None
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert not (tmp_path / "run" / ".lock").exists()  # released on the way out


def _held_by_live_process(run_dir: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    run_dir.mkdir(parents=True)
    (run_dir / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid, "token": "other"}))
    return holder


def test_a_run_dir_in_use_by_a_live_run_is_refused_without_touching_it(overrides, tmp_path):
    from regbench.lock import DirLocked
    from regbench.train import run

    run_dir = tmp_path / "run"
    holder = _held_by_live_process(run_dir)
    try:
        with pytest.raises(DirLocked, match=rf"in use by another process: pid {holder.pid}"):
            run(compose_config(overrides(f"hydra.run.dir={run_dir}"), run_dir))  # a dir the user named
        assert [p.name for p in run_dir.iterdir() if not p.name.startswith(".lock")] == []  # nothing written
    finally:
        holder.kill()
        holder.wait()
    run(compose_config(overrides("trainer.max_steps=1"), run_dir))  # its process is gone: the stale lock is taken over
    assert record(run_dir)["status"] == "ok" and not (run_dir / ".lock").exists()


def test_ddp_ranks_above_zero_share_the_run_dir_without_locking(overrides, tmp_path, monkeypatch):
    from regbench import train as train_module
    from regbench.lock import DirLock

    run_dir = tmp_path / "run"
    with DirLock(run_dir) as rank0:  # rank 0 holds it; this process plays a rank > 0 (LOCAL_RANK=1 under DDP)
        monkeypatch.setattr(train_module, "is_global_zero", lambda: False)
        train_module.run(compose_config(overrides("trainer.max_steps=1", "checkpoint.enabled=false",
                                                  f"hydra.run.dir={run_dir}"), run_dir))
        assert json.loads((run_dir / ".lock").read_text())["token"] == rank0.owner.token  # not refused, not taken


def test_the_default_run_dir_taken_by_a_run_started_at_the_same_instant_moves_to_a_unique_one(overrides, tmp_path):
    from hydra.core.hydra_config import HydraConfig

    from regbench.train import run

    taken = tmp_path / "runs" / "2026-01-01_00-00-00-000000"
    cfg = compose_config(overrides("trainer.max_steps=1"), taken)  # Hydra's default dir: not named by the user
    holder = _held_by_live_process(taken)
    try:
        run(cfg)
    finally:
        holder.kill()
        holder.wait()
    unique = taken.with_name(taken.name + "_1")
    assert record(unique)["status"] == "ok" and record(unique)["output_dir"] == str(unique)
    assert HydraConfig.get().runtime.output_dir == str(unique)  # what Lightning's DDP relaunch reads
    assert [p.name for p in taken.iterdir() if not p.name.startswith(".lock")] == []


# -- the real processes -----------------------------------------------------------------------------------
def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
            "REGBENCH_OUTPUT": str(tmp_path / "outputs")}


def _start(cmd, tmp_path, **kwargs) -> subprocess.Popen:
    """A process in its own group, so the test can always clean up everything it started."""
    return subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path), start_new_session=True, **kwargs)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _wait_for(predicate, proc, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the process ended before the moment the test waits for"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_python_train_py_stopped_by_a_signal_exits_nonzero_with_a_checkpoint_where_it_stopped(overrides, tmp_path, signum):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", *overrides("trainer.max_epochs=50", f"hydra.run.dir={run_dir}")]
    proc = _start(cmd, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run_dir / "metrics.json").is_file() and record(run_dir).get("history"), proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        _kill_group(proc)
    assert proc.returncode == 128 + signum, err[-3000:]
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and rec["interruptions"][-1]["step"] >= 6
    assert rec["interruptions"][-1]["checkpoint"]  # saved where it stopped
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow
def test_two_runs_into_one_named_dir_the_second_is_refused_and_the_first_result_kept(overrides, tmp_path):
    """Two runs in one dir both exited 0 and one result disappeared."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", *overrides("trainer.max_epochs=400", f"hydra.run.dir={run_dir}")]
    first = _start(cmd, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run_dir / "metrics.json").is_file() and record(run_dir).get("history"), first)
        second = _start(cmd, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = second.communicate(timeout=240)
        finally:
            _kill_group(second)
        assert second.returncode != 0 and "is in use by another process" in err
        assert first.poll() is None  # still training, undisturbed
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        _kill_group(first)
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and rec["output_dir"] == str(run_dir) and len(rec["history"]) >= 1


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_two_dirs(overrides, tmp_path):
    cmd = [sys.executable, "train.py", *overrides("trainer.max_steps=2")]
    procs = [_start(cmd, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        assert [p.wait(timeout=240) for p in procs] == [0, 0]
    finally:
        for p in procs:
            _kill_group(p)
    dirs = sorted((tmp_path / "outputs" / "runs").glob("*/*/*/*/*"))
    assert len(dirs) == 2 and all(record(d)["status"] == "ok" for d in dirs)


@pytest.mark.slow
def test_sigterm_to_a_sweep_stops_its_train_py_jobs(tiny_bert, glue_root, tmp_path):
    import yaml

    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "s", "axes": {"variant": [{"label": "base", "overrides": {"optim.lr": 1e-3}}], "seed": [1, 2]},
        "fixed": {"task": "glue/rte", "task.data_dir": str(glue_root / "rte"), "backbone.path": str(tiny_bert),
                  "data.max_length": 32, "data.cache_dir": str(tmp_path / "cache"), "trainer.max_epochs": 40},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["variant"], "column": "seed", "metric": "validation/accuracy"}}, sort_keys=False))
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "regbench.sweep", "run", str(sweep_file), "--sweep-dir", str(sweep_dir),
           "--project-dir", str(REPO)]
    proc = _start(cmd, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = sweep_dir / "base__seed1"
    try:
        _wait_for(lambda: (first / "metrics.json").is_file() and record(first).get("history"), proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=180)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    finally:
        _kill_group(proc)
        for line in subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines():
            pid, _, args = line.strip().partition(" ")
            if f"hydra.sweep.dir={sweep_dir}" in args:  # a job this test started, orphaned (as on main)
                os.kill(int(pid), signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert record(first)["status"] == "interrupted"
    assert not (sweep_dir / "base__seed2" / "metrics.json").exists()  # the multirun stopped: no next job
    assert f"hydra.sweep.dir={sweep_dir}" not in ps  # no train.py of this sweep left running
