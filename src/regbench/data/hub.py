"""Hub access with an actionable error when the hub cannot be reached."""

from __future__ import annotations

import os
from typing import Any

from regbench.data import DataError


def hub_offline() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def load_hub_dataset(task_cfg: Any, name: str | None = None, split: str | None = None):
    """``datasets.load_dataset(task.hub.path, task.hub.name)`` (or another config ``name``, one
    ``split``); offline misses say how to use local files."""
    import datasets

    path, name = task_cfg.hub.path, name or task_cfg.hub.get("name")
    try:
        return datasets.load_dataset(path, name, split=split)
    except Exception as err:  # ConnectionError, OfflineModeIsEnabled, DatasetNotFoundError ...
        files = ", ".join(dict(task_cfg.get("files") or {}).values()) or "the official files"
        raise DataError(
            f"could not load task {task_cfg.name!r} from the hub ({path}, {name}): {type(err).__name__}: {err}. "
            f"Without the hub, point task.data_dir at a local folder in the official layout ({files}), "
            f"e.g. `python train.py task={task_cfg.family}/{task_cfg.name} task.data_dir=/data/{task_cfg.name}`."
        ) from err
