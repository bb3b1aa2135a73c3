"""Atomic file writes: a reader (another rank, a sweep report, a resumed run) sees the old file or the
new one, never a partial one, whatever kills the writer and when.

One mechanism for every file regbench writes: the content goes to a temp file in the target's
directory (same file system, so the rename is atomic), is flushed to disk, gets the permissions a
plain ``open`` would give under the current umask (``mkstemp`` makes 0600 files and ``mkdtemp``
0700 folders, which a group sharing a cache or a run folder could not read), and is renamed over
the target. :func:`create_exclusive` is the create-only variant (a lock, an id that ranks must
agree on): it hard-links a complete temp file, which fails when the target exists.

Imports only the standard library: the sweep layer and ``train.py --help`` use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process umask applied (what ``open``/``mkdir`` would create)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; when the block ends without error, rename it over ``path``.

    For writers that need a file name (``torch.save``, ``datasets.save_to_disk`` of one file). On
    error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        with open(tmp, "rb+") as f:  # the bytes are on disk before the rename makes them visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON atomically (non-JSON values as ``str``)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str))


def create_exclusive(path: str | Path, text: str) -> bool:
    """Create ``path`` holding ``text`` only if it does not exist; True if this call created it.

    The file appears complete or not at all (a complete temp file is hard-linked to the name), so
    a concurrent reader never sees it half-written, and of several concurrent callers exactly one wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder next to ``path``; on success rename it to ``path``.

    If ``path`` appeared meanwhile (another process built the same thing), theirs is kept and ours
    removed. The folder gets umask permissions (``mkdtemp`` would leave it 0700).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, umask_mode(0o777))
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:  # a non-empty folder of that name exists: another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
