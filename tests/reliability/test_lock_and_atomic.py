"""Issue 13 item 2 (the lock's staleness rules) and issue 18 (one atomic writer): unit level."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from regbench.atomic import atomic_path, create_exclusive, write_json_atomic, write_text_atomic
from regbench.lock import DirLock, DirLocked, Owner


def _write_owner(directory, **fields):
    directory.mkdir(parents=True, exist_ok=True)
    me = Owner.this_process()
    (directory / ".lock").write_text(json.dumps({**me.__dict__, "token": "someone-else", **fields}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_lock_on_a_dir_is_refused_until_the_first_is_released(tmp_path):
    with DirLock(tmp_path / "run"):
        with pytest.raises(DirLocked, match=rf"pid {os.getpid()}"):
            DirLock(tmp_path / "run").acquire()
    with DirLock(tmp_path / "run"):
        pass
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("fields, why", [
    ({"pid": "DEAD"}, "no longer runs"),
    ({"pid": "PARENT", "process_start": "1"}, "now belongs to another process"),   # the pid was reused
    ({"boot_id": "an-older-boot", "pid": 1}, "the host rebooted"),
    ({"host": "node-7", "pid": 1, "slurm_job": "4242_3", "slurm_restart": 0}, "requeued"),  # requeued, another node
])
def test_stale_locks_are_taken_over(tmp_path, monkeypatch, fields, why):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    fields = {k: {"DEAD": _dead_pid, "PARENT": os.getppid}[v]() if v in ("DEAD", "PARENT") else v
              for k, v in fields.items()}
    _write_owner(tmp_path / "run", **fields)
    lock = DirLock(tmp_path / "run").acquire()
    assert why in lock.took_over
    lock.release()


@pytest.mark.parametrize("fields", [
    {"host": "node-7", "pid": 1, "slurm_job": None},                        # another host, cannot be checked
    {"host": "node-7", "pid": 1, "slurm_job": "99"},                        # another SLURM job
    {"host": "node-7", "pid": 1, "slurm_job": "4242", "slurm_restart": 0},  # another step of this allocation
    {"pid": 1, "slurm_job": "4242", "slurm_restart": 0},                    # a live process here, same job
])
def test_live_or_uncheckable_locks_are_respected(tmp_path, monkeypatch, fields):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    _write_owner(tmp_path / "run", process_start=None, **fields)
    with pytest.raises(DirLocked, match="If that process is gone .* delete"):
        DirLock(tmp_path / "run").acquire()


def test_release_leaves_a_lock_it_no_longer_owns(tmp_path):
    lock = DirLock(tmp_path / "run").acquire()
    _write_owner(tmp_path / "run")  # taken over by someone else meanwhile
    lock.release()
    assert json.loads((tmp_path / "run" / ".lock").read_text())["token"] == "someone-else"


def test_atomic_writes_leave_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"status": "ok"})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"status": "runn')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"status": "ok"} and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_files_get_umask_permissions_and_exclusive_create_has_one_winner(tmp_path):
    previous = os.umask(0o002)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o664  # mkstemp alone would give 0600
    finally:
        os.umask(previous)
    assert create_exclusive(tmp_path / "id", "first") and not create_exclusive(tmp_path / "id", "second")
    assert (tmp_path / "id").read_text() == "first"


def test_one_atomic_writer_in_the_source():
    """Issue 18: no hand-rolled temp-file-and-rename outside regbench/atomic.py."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "regbench"
    rolled = [f"{p}:{n}" for p in src.rglob("*.py") if p.name != "atomic.py"
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"mkstemp|mkdtemp|\.tmp\"|os\.link\(", line)]
    assert rolled == []
