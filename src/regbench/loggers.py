"""Experiment loggers (CSV, TensorBoard, W&B): built from ``cfg.logger``, told what the run is,
closed whatever happens.

- Every logger gets the same description of the run when it starts (:func:`run_description`: the
  resolved config, parameter counts, the regularizer's parameters and the run's tags) and the best
  validation metrics when it ends; TensorBoard gets its HPARAMS entry then, with the best main
  metric, because its hparams view needs a metric value.
- A W&B run is finished when the run ends, also when it failed (exit code 1). Hydra's basic
  launcher runs a sweep's jobs in one process, and Lightning's ``WandbLogger`` attaches to an
  unfinished ``wandb.run`` instead of starting a new one, so without this every job after the
  first logged into the first job's run.
- ``requires: [package]`` in a logger entry names its optional package; a missing one stops the
  run before data or weights are read, with the extra to install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regbench.atomic import create_exclusive
from regbench.hardware import is_global_zero
from regbench.config import method_names

# W&B refuses tags longer than this; longer ones are shortened with a hash suffix.
MAX_TAG_LENGTH = 64
NON_LOGGER_KEYS = ("requires",)


class MissingLoggerError(ImportError):
    """A selected logger needs an optional package that is not installed."""


def check_logger_requirements(logger_cfg: Any) -> None:
    """Fail fast when a selected logger's ``requires`` lists a missing package (names the extra)."""
    for name, spec in (logger_cfg or {}).items():
        for package in (spec or {}).get("requires") or []:
            if importlib.util.find_spec(str(package)) is None:
                raise MissingLoggerError(
                    f"logger.{name} needs the Python package {package!r}, which is not installed: "
                    f"pip install 'regbench[{package}]' (from a checkout: pip install -e '.[{package}]'), "
                    f"or choose another logger (logger=csv)")


def _short_tag(tag: str) -> str:
    if len(tag) <= MAX_TAG_LENGTH:
        return tag
    digest = hashlib.sha1(tag.encode()).hexdigest()[:8]
    return f"{tag[:MAX_TAG_LENGTH - 9]}~{digest}"


def run_tags(cfg: Any) -> list[str]:
    """``key:value`` tags saying what the run is: task, backbone, regularizer, seed and, in a sweep,
    the sweep, its scale and the cell id (from the ``sweep`` node the sweep layer sets)."""
    tags = [f"task:{cfg.task.family}/{cfg.task.name}", f"backbone:{cfg.backbone.name}",
            f"regularizer:{method_names(cfg.regularizer)}", f"seed:{cfg.seed}"]
    sweep = cfg.get("sweep") or {}
    for key in ("name", "scale", "cell"):
        if sweep.get(key) is not None:
            tags.append(f"{'sweep' if key == 'name' else key}:{sweep[key]}")
    return [_short_tag(t) for t in tags]


def run_description(cfg: Any, record: dict[str, Any]) -> dict[str, Any]:
    """What every logger records about the run: the resolved config at the top level, plus
    ``regbench.{params,regularizer,tags,output_dir}``."""
    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    config["regbench"] = {"params": record.get("params"), "regularizer": record.get("regularizer_params"),
                          "tags": run_tags(cfg), "output_dir": record.get("output_dir")}
    return config


def build_loggers(cfg: Any, output_dir: Path) -> list:
    """Instantiate ``cfg.logger`` entries. A W&B run id is persisted in the run dir (resumes and
    requeues continue the same run) and the run's tags are added to the entry's own."""
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import CSVLogger

    loggers = []
    for spec in (cfg.logger or {}).values():
        spec = OmegaConf.to_container(spec, resolve=True)
        for key in NON_LOGGER_KEYS:
            spec.pop(key, None)
        if str(spec.get("_target_", "")).endswith("WandbLogger"):
            spec.setdefault("id", persistent_run_id(output_dir / "wandb_id"))
            spec.setdefault("resume", "allow")
            spec["tags"] = list(dict.fromkeys([*(spec.get("tags") or []), *run_tags(cfg)]))
        logger = instantiate(spec)
        if isinstance(logger, CSVLogger) and is_global_zero():
            keep_previous_csv(Path(logger.log_dir) / "metrics.csv")
        loggers.append(logger)
    return loggers


def persistent_run_id(id_file: Path) -> str:
    """The id stored in ``id_file``, created on first use; every rank and every restart reads the same one.

    Created exclusively (:func:`regbench.atomic.create_exclusive`), so ranks that start together
    agree on one id without coordination.
    """
    if not id_file.is_file():
        create_exclusive(id_file, uuid.uuid4().hex[:12])
    return id_file.read_text().strip()


def keep_previous_csv(path: Path) -> Path | None:
    """Rename ``path`` to the first free ``metrics.<n>.csv`` next to it; returns the new path.

    Lightning's CSV logger deletes an existing ``metrics.csv`` when it starts: the file of an earlier
    segment of this run (before a kill and resume) is kept instead.
    """
    if not path.is_file():
        return None
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    os.replace(path, kept)
    return kept


def _is_tensorboard(logger: Any) -> bool:
    return type(logger).__name__ == "TensorBoardLogger"


def log_run_start(loggers: list, description: dict[str, Any]) -> None:
    """Give every logger the run's description (W&B: the run config; CSV/TensorBoard: hparams.yaml)."""
    for logger in loggers:
        logger.log_hyperparams(description)


def close_loggers(loggers: list, description: dict[str, Any] | None, record: dict[str, Any],
                  step: int | None) -> None:
    """End of run, success or failure: best metrics to every logger, TensorBoard's HPARAMS entry,
    the W&B run's summary, and ``wandb.finish`` (exit code 1 for a failed run).

    Runs in the training function's ``finally``; a logger that fails here must not hide the run's
    own error, so each step is attempted on its own.
    """
    best = {f"best/{k}": float(v) for k, v in (record.get("best") or {}).items() if isinstance(v, (int, float))}
    main = record.get("main_metric")
    for logger in loggers:
        try:
            if _is_tensorboard(logger) and description is not None:
                value = best.get(f"best/{main}", float("nan"))
                logger.log_hyperparams(description, metrics={f"hp/best/{main}": value}, step=step)
            elif best:
                logger.log_metrics(best, step=step)
            logger.save()
        except Exception as err:  # noqa: BLE001 - reported, the run's own outcome wins
            print(f"warning: closing logger {type(logger).__name__} failed: {err}", file=sys.stderr)
    finish_wandb(record)


def finish_wandb(record: dict[str, Any]) -> None:
    """Write the run's outcome into the current W&B run's summary and finish it (if one is open)."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is None:
        return
    failed = record.get("status") != "ok"
    try:
        run.summary.update({"status": record.get("status"), "error": record.get("error"),
                            "main_metric": record.get("main_metric"), "best": record.get("best") or {},
                            "wall_time_s": record.get("wall_time_s"), "output_dir": record.get("output_dir")})
    finally:
        wandb.finish(exit_code=1 if failed else 0)
