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
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regbench.config import validate
from regbench.recorder import RunRecorder, write_json_atomic

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
        return str(last) if last.is_file() else None
    return str(cfg.resume)


def build_loggers(cfg: DictConfig, output_dir: Path) -> list:
    """Instantiate ``cfg.logger`` entries; a W&B run id is persisted in the run dir for resumes."""
    from hydra.utils import instantiate

    loggers = []
    for name, spec in (cfg.logger or {}).items():
        spec = OmegaConf.to_container(spec, resolve=True)
        if str(spec.get("_target_", "")).endswith("WandbLogger"):
            id_file = output_dir / "wandb_id"
            if not id_file.is_file():
                id_file.write_text(uuid.uuid4().hex[:12])
            spec.setdefault("id", id_file.read_text().strip())
            spec.setdefault("resume", "allow")
        loggers.append(instantiate(spec))
    return loggers


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


def _checkpoint_callback(cfg: DictConfig, output_dir: Path, monitor: str):
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=output_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
        save_top_k=int(cfg.checkpoint.save_top_k), save_last=bool(cfg.checkpoint.save_last),
        auto_insert_metric_name=False,
    )


def print_table(record: dict[str, Any]) -> None:
    """Final and best validation metrics, one row per metric."""
    final, best = record.get("final") or {}, record.get("best") or {}
    keys = sorted(set(final) | set(best))
    lines = [f"{'metric':<36} {'final':>10} {'best':>10}", "-" * 58]
    lines += [f"{k:<36} {final.get(k, float('nan')):>10.4f} {best.get(k, float('nan')):>10.4f}" for k in keys]
    lines.append(f"status={record['status']}  train_samples_per_s={record.get('train_samples_per_s')}  "
                 f"wall_time_s={record.get('wall_time_s')}")
    print("\n".join(lines), flush=True)


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
    trainer = None
    try:
        write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        validate(cfg)
        from regbench.regularizers import build_regularizer

        regularizer = build_regularizer(cfg.regularizer)
        record["regularizer_params"] = regularizer.describe()
        from regbench.models.backbone import check_backbone

        backbone_path = check_backbone(cfg.backbone)
        recorder.save()

        import lightning as L
        from transformers import AutoTokenizer

        from regbench.data.datamodule import TaskDataModule
        from regbench.models import build_module

        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        tokenizer = AutoTokenizer.from_pretrained(backbone_path)
        datamodule = TaskDataModule(cfg.task, cfg.data, tokenizer, seed=int(cfg.seed))
        datamodule.prepare_data()  # data errors surface here, before the model is built
        module = build_module(cfg, regularizer)
        record["params"] = count_parameters(module.model)
        log.info("parameters: total=%(total)d trainable=%(trainable)d", record["params"])

        callbacks = [recorder]
        if cfg.checkpoint.enabled:
            callbacks.append(_checkpoint_callback(cfg, output_dir, main_key))
        hardware = OmegaConf.to_container(cfg.hardware, resolve=True)
        trainer = L.Trainer(
            **hardware,
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            logger=build_loggers(cfg, output_dir) or False,
            callbacks=callbacks,
            enable_checkpointing=bool(cfg.checkpoint.enabled),
            gradient_clip_val=float(cfg.optim.grad_clip) or None,
            accumulate_grad_batches=int(cfg.optim.accumulate_grad_batches),
            default_root_dir=str(output_dir),
            enable_model_summary=False,
        )
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
        if trainer is None or trainer.is_global_zero:
            print_table(record)
    best = (record.get("best") or {}).get(main_key)
    return None if best is None else float(best)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text via a temp file and rename (used for config.yaml)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
