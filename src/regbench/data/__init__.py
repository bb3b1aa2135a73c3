"""Task data: loaders (hub + official local layouts) and the datamodule.

A loader is ``fn(task_cfg) -> datasets.DatasetDict`` with a ``train`` split and one split per
``task.eval_splits``; classification rows carry ``task.text_keys`` + ``label``. A task YAML selects
its loader by dotted path, ``loader: {_target_: regbench.data.glue.load_glue, _partial_: true}``
(further keys are bound arguments, e.g. ``fmt: e2e``), completed with the task config here; an
unlabeled test split (``regbench predict``) likewise through ``task.test.loader``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("regbench")
_SKIPS: list[dict[str, Any]] | None = None


class DataError(ValueError):
    """Task data is missing or malformed; the message names the file/row/column and the fix."""


def read_text(path: Path) -> str:
    """A data file's text (UTF-8, optional BOM); bytes that are not UTF-8 fail naming the file, line and byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(f"{path}:{line}: bytes {data[err.start:err.end]!r} at column {column} are not UTF-8 "
                        f"({err.reason}); the official files are UTF-8: re-encode the file "
                        f"(e.g. iconv -f latin1 -t utf-8)") from None


def report_skips(where: str, reason: str, lines: list[int] | None = None, count: int | None = None) -> None:
    """Count and log rows a loader leaves out on purpose (documented per loader); the run records them."""
    lines = list(lines or [])
    count = len(lines) if count is None else count
    if not count:
        return
    shown = f" (lines {', '.join(map(str, lines[:5]))}{' ...' if len(lines) > 5 else ''})" if lines else ""
    log.warning("%s: skipped %d row(s): %s%s", where, count, reason, shown)
    if _SKIPS is not None:
        _SKIPS.append({"file": str(where), "reason": reason, "rows": count, "first_lines": lines[:5]})


@contextlib.contextmanager
def collect_skips() -> Iterator[list[dict[str, Any]]]:
    """Collect the :func:`report_skips` of the loaders called in the block."""
    global _SKIPS
    saved, _SKIPS = _SKIPS, []
    try:
        yield _SKIPS
    finally:
        _SKIPS = saved


def local_split_paths(task_cfg: Any, folders: bool = False) -> dict[str, Path]:
    """Path of each split needed for training and evaluation under ``task.data_dir`` (via ``task.files``).

    Fails before anything is read, naming every unnamed split or missing file at once; a split
    may be a folder only where ``folders`` says so (WebNLG's XML trees).
    """
    root = Path(task_cfg.data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"task.data_dir={str(root)!r} is not a directory")
    files = dict(task_cfg.files)
    needed = ["train", *task_cfg.eval_splits]
    unnamed = [s for s in needed if s not in files]
    if unnamed:
        raise DataError(f"task.files has no file name for split(s) {unnamed} of task {task_cfg.name!r}")
    paths = {split: root / files[split] for split in needed}
    missing = [str(p) for p in paths.values() if not (p.is_file() or (folders and p.is_dir()))]
    if missing:
        raise DataError(f"task {task_cfg.name!r}: missing data file(s) {missing} in task.data_dir={str(root)!r} "
                        f"(set task.files.<split>=<name> for other file names)")
    return paths


def load_test_split(task_cfg: Any, split: str):
    """An unlabeled test split of a task (``regbench predict``), failing with the valid names.

    ``task.test.loader`` is a ``_partial_`` target ``fn(task_cfg, split) -> datasets.Dataset`` with the
    text columns, ``index`` (the benchmark's id) and ``label`` = -1."""
    from hydra.utils import instantiate

    test = task_cfg.get("test") or {}
    splits = list(test.get("files") or {})
    if split not in splits or not (test.get("loader") or {}).get("_target_"):
        raise DataError(f"task {task_cfg.family}/{task_cfg.name} has no unlabeled test split {split!r}"
                        + (f"; its test splits: {splits}" if splits else " (task.test is not set for it)"))
    return instantiate(test.loader)(task_cfg, split)


def load_task(task_cfg: Any, limits: dict[str, int | None] | None = None):
    """Load the raw ``DatasetDict`` of a task through ``task.loader`` (a ``_partial_`` target).

    ``limits`` (split -> leading rows kept) reach loaders that take a ``limits`` keyword, so they can
    stop reading early; the caller still cuts every split to its limit."""
    import inspect

    from hydra.utils import instantiate

    spec = task_cfg.loader
    if not hasattr(spec, "get") or not spec.get("_target_") or not spec.get("_partial_"):
        raise DataError(f"task.loader={spec!r} must be {{_target_: <dotted path of fn(task_cfg)>, _partial_: true}}"
                        f" (e.g. regbench.data.glue.load_glue)")
    loader = instantiate(spec)
    if limits and "limits" in inspect.signature(loader).parameters:
        return loader(task_cfg, limits=limits)
    return loader(task_cfg)
