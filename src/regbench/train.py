"""Build datamodule, module, regularizer and trainer from the config; run; record the run.

Order matters: every check that can fail cheaply (config values, regularizer parameters, backbone
path, data files) runs before any model weights are read. Whatever happens, the run dir ends with
``config.yaml`` and ``metrics.json`` (status ``ok`` or ``failed`` with the error and the step).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regbench.config import validate
from regbench.extras import check_config_extras
from regbench.hardware import check_requirements, is_global_zero, isolated_process_group, single_run_relaunch
from regbench.loggers import (build_loggers, check_logger_requirements, close_loggers, log_run_start,
                              run_description)
from regbench.recorder import RunRecorder, write_text_atomic

log = logging.getLogger("regbench")


def count_parameters(model: Any) -> dict[str, int]:
    """Total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """``resume=auto``: the run dir's ``checkpoints/last.ckpt`` if present; ``never``: none; else the path."""
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        last = output_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None  # a directory for sharded (FSDP/DeepSpeed) states
    return str(cfg.resume)


def _initial_record(cfg: DictConfig, output_dir: Path, resuming: bool) -> dict[str, Any]:
    record: dict[str, Any] = {}
    previous = output_dir / "metrics.json"
    if resuming and previous.is_file():
        record = json.loads(previous.read_text())
    record.update(
        status="running", error=None, failed_step=None,
        task=cfg.task.name, task_family=cfg.task.family, backbone=cfg.backbone.name,
        regularizer=cfg.regularizer.name, seed=int(cfg.seed), output_dir=str(output_dir),
    )
    return record


def result_table(record: dict[str, Any]) -> str:
    """Final and best validation metrics, one row per metric, then status, throughput and run dir."""
    final, best = record.get("final") or {}, record.get("best") or {}
    keys = sorted(set(final) | set(best))
    lines = [f"{'metric':<36} {'final':>10} {'best':>10}", "-" * 58]
    lines += [f"{k:<36} {final.get(k, float('nan')):>10.4f} {best.get(k, float('nan')):>10.4f}" for k in keys]
    lines.append(f"status={record['status']}  train_samples_per_s={record.get('train_samples_per_s')}  "
                 f"wall_time_s={record.get('wall_time_s')}")
    if record.get("error"):
        lines.append(f"error: {record['error']}")
    lines.append(f"run dir: {record.get('output_dir')}")
    return "\n".join(lines)


def report_result(record: dict[str, Any]) -> None:
    """The run's last lines: the metric table and the run dir, in the console and in ``train.log``
    (through the root logger's handlers when Hydra configured them; printed otherwise)."""
    table = result_table(record)
    if logging.getLogger().handlers:
        log.info("result\n%s", table)
    else:
        print(table, flush=True)


def run(cfg: DictConfig) -> float | None:
    """Train and evaluate one configuration; returns the best value of the task's main metric."""
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = resume_checkpoint(cfg, output_dir)
    record = _initial_record(cfg, output_dir, resuming=ckpt_path is not None)
    prior_wall = float(record.get("wall_time_s") or 0.0)
    main_key = f"{cfg.task.eval_splits[0]}/{cfg.task.main_metric}"
    recorder = RunRecorder(output_dir / "metrics.json", record, main_key)
    trainer, loggers, description = None, [], None
    try:
        if is_global_zero():
            write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        validate(cfg)
        check_requirements(cfg.hardware)
        check_logger_requirements(cfg.logger)
        check_config_extras(cfg)
        from regbench.regularizers import build_regularizer

        regularizer = build_regularizer(cfg.regularizer)
        record["regularizer_params"] = regularizer.describe()
        from regbench.models.backbone import check_backbone

        backbone_path = check_backbone(cfg.backbone)
        recorder.save()

        import lightning as L
        from transformers import AutoTokenizer

        from regbench.logs import setup_run_logging

        setup_run_logging()

        from regbench.data.datamodule import TaskDataModule
        from regbench.models import build_module

        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        tokenizer = AutoTokenizer.from_pretrained(backbone_path)
        datamodule = TaskDataModule(cfg.task, cfg.data, tokenizer, seed=int(cfg.seed))
        datamodule.prepare_data()  # data errors surface here, before the model is built
        module = build_module(cfg, regularizer)
        record["params"] = count_parameters(module.model)
        log.info("parameters: total=%(total)d trainable=%(trainable)d", record["params"])

        from regbench.checkpointing import AtomicCheckpointIO, checkpoint_callbacks
        from regbench.hardware import instantiate_targets, trainer_hardware_kwargs

        callbacks = [recorder]
        if cfg.checkpoint.enabled:
            callbacks += checkpoint_callbacks(cfg, output_dir, main_key)
        trainer_kwargs = instantiate_targets(cfg.trainer)
        plugins = trainer_kwargs.pop("plugins", None) or []
        plugins = [*(plugins if isinstance(plugins, list) else [plugins]), AtomicCheckpointIO()]
        loggers = build_loggers(cfg, output_dir)
        trainer = L.Trainer(
            **trainer_hardware_kwargs(cfg.hardware),
            **trainer_kwargs,
            plugins=plugins,
            logger=loggers or False,
            callbacks=callbacks,
            enable_checkpointing=bool(cfg.checkpoint.enabled),
            gradient_clip_val=float(cfg.optim.grad_clip) or None,
            accumulate_grad_batches=int(cfg.optim.accumulate_grad_batches),
            default_root_dir=str(output_dir),
            enable_model_summary=False,
        )
        description = run_description(cfg, record)
        log_run_start(trainer.loggers, description)
        with isolated_process_group(), single_run_relaunch(str(output_dir)):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if trainer.is_global_zero:
            regularizer.export(module.model, str(output_dir))
        record["status"] = "ok"
    except Exception as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=20))
        record["failed_step"] = getattr(err, "step", trainer.global_step if trainer is not None else None)
        log.error("run failed: %s", record["error"])
        if cfg.get("raise_on_failure", True):
            raise
    finally:
        record["wall_time_s"] = round(prior_wall + time.perf_counter() - started, 3)
        recorder.save(trainer)
        # Every logger is closed whatever happened; the W&B run is finished (also on failure), so
        # the next job of an in-process sweep starts its own run.
        close_loggers(loggers, description, record, trainer.global_step if trainer is not None else None)
        if trainer.is_global_zero if trainer is not None else is_global_zero():
            report_result(record)
    best = (record.get("best") or {}).get(main_key)
    return None if best is None else float(best)
