"""One process owns a run dir (or a sweep dir) at a time: an exclusive lock file with its owner.

Two runs writing one run dir lose a result silently (both exit 0, one ``metrics.json`` wins), so a
run takes ``<dir>/.lock`` for its lifetime. The file is created exclusively
(:func:`regbench.atomic.create_exclusive`) and names its owner: host, pid, the process's start
time, the boot id and the SLURM job. It is removed when the owner ends (normally, by an exception,
by ``sys.exit``), and a lock left behind by a killed process is recognised as stale and taken over:

- same host and boot: the pid no longer runs, or runs a newer process (pid reuse, told apart by
  the process start time in ``/proc``);
- same host, other boot id: the machine rebooted since;
- another host, same SLURM job (``SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID`` or ``SLURM_JOB_ID``)
  with a lower ``SLURM_RESTART_COUNT``: an earlier incarnation of this job, which was requeued
  (possibly onto another node); SLURM runs one incarnation of a job at a time. Two steps of one
  allocation (same job, same restart count) are concurrent and respect each other's lock.

A lock held by a live process, or by a process on another host that is not this SLURM job, is
respected: acquiring raises :class:`DirLocked` naming the owner and the file to delete if that
owner is known to be gone. Taking over a stale lock is serialised with ``flock`` on a guard file
(where the file system supports it), so two processes that find the same stale lock cannot both
take it.

Only the process that owns the run's files takes the lock: under DDP, ranks > 0 share rank 0's
run dir (see :func:`regbench.hardware.is_global_zero`) and never lock it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from regbench.atomic import create_exclusive

LOCK_NAME = ".lock"


class DirLocked(RuntimeError):
    """The directory is owned by another live process."""

    def __init__(self, path: Path, owner: "Owner", what: str):
        self.path, self.owner = path, owner
        super().__init__(
            f"{what} dir {path.parent} is in use by another process: {owner.describe()} (lock file {path}). "
            f"Wait for it to end, or use another dir. If that process is gone (e.g. its node died), delete {path}."
        )


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``); None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after its closing parenthesis are plain
    return stat.rsplit(")", 1)[1].split()[19]


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _slurm_job() -> str | None:
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class Owner:
    """Who holds a lock (stored as JSON in the lock file)."""

    host: str
    pid: int
    token: str
    process_start: str | None = None
    boot_id: str | None = None
    slurm_job: str | None = None
    slurm_restart: int | None = None  # SLURM_RESTART_COUNT: bumped by every requeue of the job
    since: str = ""

    @classmethod
    def this_process(cls) -> "Owner":
        return cls(host=socket.gethostname(), pid=os.getpid(), token=uuid.uuid4().hex,
                   process_start=_proc_start(os.getpid()), boot_id=_boot_id(), slurm_job=_slurm_job(),
                   slurm_restart=int(os.environ.get("SLURM_RESTART_COUNT") or 0) if _slurm_job() else None,
                   since=time.strftime("%Y-%m-%d %H:%M:%S"))

    @classmethod
    def parse(cls, text: str) -> "Owner | None":
        try:
            data = json.loads(text)
            return cls(**{k: data.get(k) for k in ("host", "pid", "token", "process_start", "boot_id",
                                                    "slurm_job", "slurm_restart", "since")})
        except (ValueError, TypeError):
            return None

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on host {self.host}{job}, since {self.since}"

    def stale_reason(self) -> str | None:
        """Why this owner is certainly gone (seen from the current process), or None if it may be alive."""
        me = Owner.this_process()
        if self.host == me.host:
            if self.boot_id and me.boot_id and self.boot_id != me.boot_id:
                return "the host rebooted since"
            if not _pid_alive(int(self.pid)):
                return f"process {self.pid} no longer runs"
            if self.process_start and self.process_start != _proc_start(int(self.pid)):
                return f"pid {self.pid} now belongs to another process"
            return None  # a live process on this host
        if self.slurm_job and self.slurm_job == me.slurm_job and int(self.slurm_restart or 0) < int(me.slurm_restart or 0):
            return (f"it is an earlier run of this SLURM job ({self.slurm_job}, restart {self.slurm_restart or 0}; "
                    f"this is restart {me.slurm_restart}), requeued")
        return None


@contextlib.contextmanager
def _guard(directory: Path) -> Iterator[None]:
    """``flock`` on ``<dir>/.lock.guard`` while a stale lock is replaced (skipped where unsupported)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(directory / f"{LOCK_NAME}.guard", "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except OSError:  # file systems without flock: the exclusive create below still decides
            pass
        yield


class DirLock:
    """Exclusive ownership of ``directory`` by this process (see the module docstring).

    ``what`` names the directory in messages (``run``, ``sweep``). Use as a context manager or
    call :meth:`acquire` / :meth:`release`; releasing twice, or a lock that was taken over, is a no-op.
    """

    def __init__(self, directory: str | Path, what: str = "run"):
        self.directory, self.what = Path(directory), what
        self.path = self.directory / LOCK_NAME
        self.owner: Owner | None = None
        self.took_over: str | None = None  # why a stale lock was replaced, for the log

    def acquire(self) -> "DirLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        me = Owner.this_process()
        text = json.dumps(asdict(me))
        for _ in range(5):
            if create_exclusive(self.path, text):
                self.owner = me
                return self
            with _guard(self.directory):
                current = self._read()
                if current is None:  # released meanwhile, or unreadable (not written by this module)
                    if self.path.exists() and Owner.parse(self._text()) is None:
                        self.path.unlink(missing_ok=True)
                        self.took_over = "the lock file was unreadable"
                    continue
                if current.token == me.token or (current.host, current.pid) == (me.host, me.pid):
                    raise DirLocked(self.path, current, self.what)  # this process holds it already
                reason = current.stale_reason()
                if reason is None:
                    raise DirLocked(self.path, current, self.what)
                if self._read() == current:  # unchanged under the guard: replace it
                    self.path.unlink(missing_ok=True)
                    self.took_over = f"stale lock of {current.describe()} replaced: {reason}"
        raise DirLocked(self.path, self._read() or me, self.what)

    def release(self) -> None:
        if self.owner is None:
            return
        current = self._read()
        if current is not None and current.token == self.owner.token:
            self.path.unlink(missing_ok=True)
        self.owner = None

    def _text(self) -> str:
        try:
            return self.path.read_text()
        except OSError:
            return ""

    def _read(self) -> Owner | None:
        return Owner.parse(self._text()) if self.path.exists() else None

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
