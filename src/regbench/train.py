"""Build datamodule, module, regularizer and trainer from the config; run; record the run.

Order matters: every check that can fail cheaply (run dir ownership and config fingerprint,
config values, regularizer parameters, backbone path, checkpoint to resume, data files) runs before
any model weights are read. Whatever happens after the run dir is claimed, it ends with
``config.yaml`` and ``metrics.json`` whose ``status`` says how the run ended:

- ``ok``: training ran its planned steps and the final weights were evaluated;
- ``incomplete``: training stopped before its planned steps (``trainer.max_time``); the weights
  where it stopped were evaluated and ``last.ckpt`` holds them, so a rerun resumes;
- ``interrupted``: SIGTERM/SIGINT (or a launcher's exit) stopped it; the step is recorded, the
  process exits with 128 + signal number (see :mod:`regbench.interrupts`);
- ``failed``: an exception, with ``error`` and ``failed_step``.

Two things are refused before anything in the run dir is touched: a run dir owned by another live
process (:mod:`regbench.lock`), and a run dir or checkpoint made with another result-relevant
config (:mod:`regbench.run_dir`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, read_write

from regbench.atomic import write_json_atomic, write_text_atomic
from regbench.config import method_names, validate
from regbench.extras import check_config_extras
from regbench.hardware import check_requirements, is_global_zero, isolated_process_group, single_run_relaunch
from regbench.interrupts import InterruptState, RunInterrupted, handle_interrupts
from regbench.lock import DirLock, DirLocked
from regbench.loggers import (build_loggers, check_logger_requirements, close_loggers, log_run_start,
                              run_description)
from regbench.recorder import RunRecorder
from regbench.run_dir import (FINGERPRINT_FILE, ConfigMismatchError, fingerprint_record, has_previous_run,
                              mismatch_message, move_previous_run_aside, read_fingerprint_record)

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
    return str(Path(str(cfg.resume)).expanduser())


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=None)
    except Exception:  # noqa: BLE001  (an unresolvable value: recorded as missing, validation names it)
        return None


def _regularizer_names(cfg: DictConfig) -> str | None:
    """The selected methods in order (``tlm``, ``mixout+wdecay``); None when the node is unreadable."""
    try:
        return method_names(cfg.regularizer)
    except Exception:  # noqa: BLE001  (recorded as missing; validation names the problem)
        return None


def _initial_record(cfg: DictConfig, output_dir: Path, resuming: bool) -> dict[str, Any]:
    from regbench.models.backbone import recorded_backbone

    record: dict[str, Any] = {}
    previous = output_dir / "metrics.json"
    if resuming and previous.is_file():
        try:
            record = json.loads(previous.read_text())
        except ValueError:
            log.warning("unreadable %s: the run record restarts (the checkpoint still holds the history)", previous)
    try:
        backbone = recorded_backbone(cfg.backbone)
    except Exception:  # noqa: BLE001
        backbone = _select(cfg, "backbone.name")
    record.update(
        status="running", error=None, failed_step=None,
        task=_select(cfg, "task.name"), task_family=_select(cfg, "task.family"), backbone=backbone,
        backbone_option=_select(cfg, "backbone.name"), backbone_path=_select(cfg, "backbone.path"),
        regularizer=_regularizer_names(cfg),
        seed=_select(cfg, "seed"), output_dir=str(output_dir),
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


# -- the run dir ------------------------------------------------------------------------------------
def _run_dir_named_by_user() -> bool:
    """False only for a single run in Hydra's default (timestamped) run dir."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return True
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return True
        overrides = [*hydra_cfg.overrides.hydra, *hydra_cfg.overrides.task]
        return any(o.lstrip("+").startswith(("hydra.run.dir=", "paths.output_dir=")) for o in overrides)
    except Exception:  # noqa: BLE001
        return True


def _move_to_unique_dir(cfg: DictConfig, taken: Path) -> Path:
    """A default run dir already taken by a live run (started the same instant): use ``<dir>_<n>``."""
    from hydra.core.hydra_config import HydraConfig

    n = 1
    while True:
        candidate = taken.with_name(f"{taken.name}_{n}")
        try:
            candidate.mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
    if (taken / ".hydra").is_dir():
        shutil.copytree(taken / ".hydra", candidate / ".hydra")
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg):  # paths.output_dir and Lightning's DDP relaunch read these
        hydra_cfg.runtime.output_dir = str(candidate)
        hydra_cfg.run.dir = str(candidate)
    if Path(str(cfg.paths.output_dir)) != candidate:
        with read_write(cfg):
            cfg.paths.output_dir = str(candidate)
    log.warning("run dir %s is in use by another run started at the same time; this run uses %s", taken, candidate)
    return candidate


def claim_run_dir(cfg: DictConfig, output_dir: Path) -> tuple[DirLock, Path]:
    """Lock the run dir for this run's lifetime; a default dir taken by a live run is replaced by a unique one."""
    lock = DirLock(output_dir, "run")
    try:
        lock.acquire()
    except DirLocked:
        if _run_dir_named_by_user():
            raise
        output_dir = _move_to_unique_dir(cfg, output_dir)
        lock = DirLock(output_dir, "run").acquire()
    if lock.took_over:
        log.warning("%s: %s", lock.path, lock.took_over)
    return lock, output_dir


def check_run_dir(cfg: DictConfig, output_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse a run dir holding a run of another config (nothing is written); ``resume=never`` moves
    a previous run's files aside to ``<run dir>.replaced-<n>`` instead."""
    if str(cfg.get("resume")) == "never":
        if has_previous_run(output_dir):
            moved = move_previous_run_aside(output_dir)
            if moved is not None:
                log.warning("resume=never: the previous run's files in %s were moved to %s", output_dir, moved)
        return
    stored = read_fingerprint_record(output_dir)
    if stored is None:
        return
    message = mismatch_message(
        f"run dir {output_dir}", stored, fingerprint,
        f"To start fresh: resume=never (the previous run's files are moved to {output_dir.name}.replaced-<n>), "
        f"or another run dir (hydra.run.dir=...). To continue that run, rerun it with its own config "
        f"({output_dir / 'config.yaml'}).")
    if message:
        raise ConfigMismatchError(message)


def check_checkpoint(ckpt_path: str, fingerprint: dict[str, Any]) -> None:
    """The checkpoint to resume from loads safely and was written by a run of this config."""
    from regbench.checkpointing import inspect_checkpoint
    from regbench.run_dir import CHECKPOINT_KEY

    stored = inspect_checkpoint(ckpt_path).get(CHECKPOINT_KEY)
    if stored is None:
        return  # written before fingerprints existed, or a sharded folder: the run dir's record decides
    message = mismatch_message(
        f"checkpoint {ckpt_path}", stored, fingerprint,
        "A checkpoint continues the run that wrote it: resume it with that run's config, or start fresh "
        "without resume (resume=never).")
    if message:
        raise ConfigMismatchError(message)


# -- the end of training ----------------------------------------------------------------------------
def finish_training(trainer: Any, module: Any, datamodule: Any, recorder: RunRecorder) -> tuple[str, str | None]:
    """Evaluate the final weights unless the last validation already did; ``("ok", None)`` when
    training ran its planned steps, else ``("incomplete", why)``.

    ``trainer.max_steps`` ending mid-epoch (or 0) skips Lightning's end-of-epoch validation, and a
    ``trainer.max_time`` stop can too: a run is ``ok`` only with its final evaluation recorded.
    """
    from regbench.checkpointing import TimeBudget

    if recorder.last_evaluated_step != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    planned = trainer.estimated_stepping_batches
    if trainer.global_step >= planned:
        return "ok", None
    budget = next((c for c in trainer.callbacks if isinstance(c, TimeBudget)), None)
    why = ("the time budget (trainer.max_time) was used up; rerun with a larger trainer.max_time to continue "
           "from last.ckpt" if budget is not None and budget.reached else "training stopped early (trainer.should_stop)")
    return "incomplete", f"{why}; {trainer.global_step} of {planned} optimizer steps done"


def _record_interrupt(record: dict[str, Any], err: BaseException, interrupts: InterruptState, trainer: Any,
                      saved_step: int | None, ckpt: Path | None) -> None:
    name = interrupts.signal_name or (err.signal_name if isinstance(err, RunInterrupted) else
                                      "SIGTERM" if type(err).__name__ == "SIGTERMException" else
                                      "SIGINT" if isinstance(err, KeyboardInterrupt) else None)
    step = trainer.global_step if trainer is not None else None
    cause = f"signal {name}" if name else f"{type(err).__name__}({getattr(err, 'code', '')})"
    event = {"signal": name, "cause": cause, "step": step,
             "checkpoint": str(ckpt) if saved_step is not None and ckpt is not None else None}
    record.setdefault("interruptions", []).append(event)
    record.update(status="interrupted", error=f"interrupted by {cause} at step {step}")


def run(cfg: DictConfig) -> float | None:
    """Train and evaluate one configuration; returns the best value of the task's main metric."""
    output_dir = Path(str(cfg.paths.output_dir))
    with handle_interrupts() as interrupts:
        lock = None
        if is_global_zero():  # DDP ranks > 0 work in rank 0's run dir and never lock it
            lock, output_dir = claim_run_dir(cfg, output_dir)
        try:
            return _run(cfg, output_dir, interrupts)
        finally:
            if lock is not None:
                lock.release()


def _run(cfg: DictConfig, output_dir: Path, interrupts: InterruptState) -> float | None:
    owner = is_global_zero()
    fingerprint = fingerprint_record(cfg)
    if owner:
        check_run_dir(cfg, output_dir, fingerprint)
    ckpt_path = resume_checkpoint(cfg, output_dir)
    record = _initial_record(cfg, output_dir, resuming=ckpt_path is not None)
    record["config_fingerprint"] = fingerprint["fingerprint"]
    prior_wall = record.get("wall_time_s")
    prior_wall = float(prior_wall) if isinstance(prior_wall, (int, float)) and math.isfinite(prior_wall) else 0.0
    splits, metric = _select(cfg, "task.eval_splits"), _select(cfg, "task.main_metric")
    main_key = f"{splits[0] if splits else 'validation'}/{metric}"
    recorder = RunRecorder(output_dir / "metrics.json", record, main_key, prior_wall_s=prior_wall)
    trainer = interrupt_ckpt = None
    loggers, description = [], None
    status, why = "ok", None
    try:
        if owner:
            try:
                text = OmegaConf.to_yaml(cfg, resolve=True)
            except Exception:  # noqa: BLE001  (a broken interpolation: keep the config as written)
                text = OmegaConf.to_yaml(cfg, resolve=False)
            write_text_atomic(output_dir / "config.yaml", text)
            write_json_atomic(output_dir / FINGERPRINT_FILE, fingerprint)
            recorder.save()
        validate(cfg)
        check_requirements(cfg.hardware)
        check_logger_requirements(cfg.logger)
        check_config_extras(cfg)
        from regbench.models import encoding_factory, module_class
        from regbench.regularizers import build_regularizer

        regularizer = build_regularizer(cfg.regularizer)
        regularizer.check_task(module_class(cfg), str(cfg.task.kind))  # a hook the task kind ignores: refuse
        if regularizer.leaves_parameters_unused():  # LayerDrop: DDP must accept parameters without gradients
            from regbench.hardware import allow_unused_parameters

            changed = allow_unused_parameters(cfg.hardware, f"regularizer {regularizer.name} leaves some parameters "
                                                            f"without a gradient in a step")
            if changed:
                log.info("%s", changed)
        record["regularizer_params"] = regularizer.describe()
        from regbench.models.backbone import check_backbone, check_backbone_fits

        backbone_path = check_backbone(cfg.backbone)
        if ckpt_path is not None:
            check_checkpoint(ckpt_path, fingerprint)
        recorder.save()

        import lightning as L

        from regbench.logs import setup_run_logging
        from regbench.models.backbone import load_tokenizer

        setup_run_logging()

        from regbench.data.datamodule import TaskDataModule
        from regbench.models import build_module

        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        tokenizer = load_tokenizer(backbone_path, str(cfg.backbone.kind))
        check_backbone_fits(cfg, backbone_path, tokenizer)
        datamodule = TaskDataModule(cfg.task, cfg.data, tokenizer, seed=int(cfg.seed),
                                    encoding=encoding_factory(cfg))
        datamodule.prepare_data()  # data errors surface here, before the model is built
        if datamodule.skipped:
            record["data_skipped"] = datamodule.skipped
        module = build_module(cfg, regularizer)
        record["params"] = count_parameters(module.model)
        log.info("parameters: total=%(total)d trainable=%(trainable)d", record["params"])

        from regbench.checkpointing import (AtomicCheckpointIO, FingerprintCheckpoint, InterruptCheckpoint,
                                            TimeBudget, TimeBudgetReached, checkpoint_callbacks)
        from regbench.hardware import instantiate_targets, trainer_hardware_kwargs

        trainer_kwargs = instantiate_targets(cfg.trainer)
        max_time = trainer_kwargs.pop("max_time", None)  # Lightning's Timer would end the epoch: see TimeBudget
        callbacks = [recorder, FingerprintCheckpoint(fingerprint)]
        if max_time is not None:
            callbacks.append(TimeBudget(max_time))
        if cfg.checkpoint.enabled:
            callbacks += checkpoint_callbacks(cfg, output_dir, main_key)
            if cfg.checkpoint.get("on_interrupt", True):
                interrupt_ckpt = InterruptCheckpoint(output_dir / "checkpoints" / "last.ckpt")
                callbacks.append(interrupt_ckpt)
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
            use_distributed_sampler=False,  # the datamodule shards its loaders (config.py relation)
        )
        description = run_description(cfg, record)
        log_run_start(trainer.loggers, description)
        with isolated_process_group(), single_run_relaunch(str(output_dir)):
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            except TimeBudgetReached as stop:
                log.warning("%s", stop)
            if interrupts.signum is None:
                status, why = finish_training(trainer, module, datamodule, recorder)
        if interrupts.signum is not None:  # a signal during the last step: the run ends here
            raise RunInterrupted(interrupts.signum)
        if status == "ok" and trainer.is_global_zero:
            regularizer.export(module.model, str(output_dir))
        record.update(status=status, stopped=why)
        if why:
            log.warning("run incomplete: %s", why)
    except (RunInterrupted, KeyboardInterrupt, SystemExit) as err:  # Lightning's SIGTERMException is a SystemExit
        _record_interrupt(record, err, interrupts, trainer, getattr(interrupt_ckpt, "saved_step", None),
                          getattr(interrupt_ckpt, "path", None))
        log.error("run %s", record["error"])
        if isinstance(err, RunInterrupted):
            raise
        # Lightning's SIGTERMException (SystemExit without a code: exit status 0) and a bare
        # KeyboardInterrupt become the signal's exit status; a launcher's own sys.exit keeps its code.
        signum = interrupts.signum or (signal.SIGTERM if type(err).__name__ == "SIGTERMException" else
                                       signal.SIGINT if isinstance(err, KeyboardInterrupt) else None)
        if signum is not None:
            raise RunInterrupted(signum) from None
        raise
    except Exception as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=20))
        record["failed_step"] = getattr(err, "step", trainer.global_step if trainer is not None else None)
        log.error("run failed: %s", record["error"])
        if cfg.get("raise_on_failure", True):
            raise
    finally:
        recorder.save(trainer)
        # Every logger is closed whatever happened; the W&B run is finished (also on failure), so
        # the next job of an in-process sweep starts its own run.
        close_loggers(loggers, description, record, trainer.global_step if trainer is not None else None)
        if trainer.is_global_zero if trainer is not None else owner:
            report_result(record)
    best = (record.get("best") or {}).get(main_key)
    return None if best is None else float(best)
