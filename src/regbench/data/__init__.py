"""Task data: a loader registry (hub + official local layouts) and the datamodule.

A loader is ``fn(task_cfg) -> datasets.DatasetDict`` with a ``train`` split and one split per
``task.eval_splits``; classification rows carry ``task.text_keys`` + ``label``. Loaders register
with :func:`register_loader` under the name that task YAMLs give as ``task.loader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

LOADERS: dict[str, Callable[[Any], Any]] = {}


class DataError(ValueError):
    """Task data is missing or malformed; the message names the file/row/column and the fix."""


def register_loader(name: str):
    """Decorator: make a loader selectable as ``task.loader: <name>``."""

    def wrap(fn):
        LOADERS[name] = fn
        return fn

    return wrap


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


TEST_LOADERS: dict[str, Callable[[Any, str], Any]] = {}


def register_test_loader(name: str):
    """Decorator: ``fn(task_cfg, split) -> datasets.Dataset`` reads an unlabeled test split
    (``task.test``) of the tasks whose ``task.loader`` is ``name``: text columns, ``index`` (the
    benchmark's id) and ``label`` = -1."""

    def wrap(fn):
        TEST_LOADERS[name] = fn
        return fn

    return wrap


def load_test_split(task_cfg: Any, split: str):
    """An unlabeled test split of a task (``regbench predict``), failing with the valid names."""
    from regbench.data import clue, d2t, glue  # noqa: F401  (registers built-in loaders)

    splits = list(((task_cfg.get("test") or {}).get("files") or {}))
    if split not in splits or task_cfg.loader not in TEST_LOADERS:
        raise DataError(f"task {task_cfg.family}/{task_cfg.name} has no unlabeled test split {split!r}"
                        + (f"; its test splits: {splits}" if splits else " (task.test is not set for it)"))
    return TEST_LOADERS[task_cfg.loader](task_cfg, split)


def load_task(task_cfg: Any):
    """Load the raw ``DatasetDict`` of a task through its registered loader."""
    from regbench.data import clue, d2t, glue  # noqa: F401  (registers built-in loaders)

    if task_cfg.loader not in LOADERS:
        raise DataError(f"task.loader={task_cfg.loader!r} is unknown; valid: {sorted(LOADERS)}")
    return LOADERS[task_cfg.loader](task_cfg)
