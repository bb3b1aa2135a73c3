"""Hardware presets to Trainer arguments, and the process bookkeeping that multi-process runs need.

A ``conf/hardware/*.yaml`` preset holds Lightning ``Trainer`` arguments (accelerator, devices,
strategy, precision, num_nodes). Two generic rules cover everything else:

- any node with ``_target_`` (a strategy object, a plugin) is instantiated with Hydra;
- ``requires: [pkg, ...]`` names optional packages, checked before any heavy work.

Ranks: only global rank 0 writes run files. Before the Trainer exists the rank comes from the
launcher's environment (``RANK``/``LOCAL_RANK`` set by Lightning for the processes it starts,
``SLURM_PROCID`` for srun tasks), exactly as Lightning reads it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf, read_write

NON_TRAINER_KEYS = ("requires",)


class MissingDependencyError(ImportError):
    """A hardware preset needs an optional package that is not installed."""


def check_requirements(hardware_cfg: Any) -> None:
    """Fail fast (before data or weights are read) when ``hardware.requires`` lists a missing package."""
    for package in hardware_cfg.get("requires") or []:
        if importlib.util.find_spec(str(package)) is None:
            raise MissingDependencyError(
                f"hardware.strategy={hardware_cfg.get('strategy')!r} needs the Python package {package!r}, which is "
                f"not installed. Install the optional extra: pip install -e '.[{package}]' (or pick another "
                f"hardware preset, e.g. hardware=ddp)"
            )


def instantiate_targets(node: Any) -> Any:
    """Resolve a config node to plain Python, instantiating every sub-node that has a ``_target_``."""
    from hydra.utils import instantiate

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        if "_target_" in node:
            return instantiate(node, _convert_="all")
        return {k: instantiate_targets(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)) or OmegaConf.is_list(node):
        return [instantiate_targets(v) for v in node]
    return node


def trainer_hardware_kwargs(hardware_cfg: Any) -> dict[str, Any]:
    """``Trainer`` keyword arguments of a hardware preset (``requires`` and other non-Trainer keys dropped)."""
    kwargs = instantiate_targets(hardware_cfg)
    for key in NON_TRAINER_KEYS:
        kwargs.pop(key, None)
    return kwargs


# Lightning's registered DDP strategies and their variants that pass find_unused_parameters=True to DDP.
UNUSED_PARAMETER_STRATEGIES = {"ddp": "ddp_find_unused_parameters_true",
                               "ddp_spawn": "ddp_spawn_find_unused_parameters_true",
                               "ddp_fork": "ddp_fork_find_unused_parameters_true",
                               "ddp_notebook": "ddp_notebook_find_unused_parameters_true"}


def allow_unused_parameters(hardware_cfg: Any, why: str) -> str | None:
    """Let DDP accept parameters without a gradient in a step (LayerDrop's skipped blocks), in place on
    the ``hardware`` node; returns what changed (None: nothing to change) or raises for a strategy
    where it is not supported.

    Without it, DDP's reducer waits for gradients that never come and fails at the next step
    ("Expected to have finished reduction in the prior iteration"). Single-process runs need nothing.
    FSDP and DeepSpeed are refused: whether their sharded reducers accept whole skipped blocks is not
    tested here.
    """
    from omegaconf import open_dict

    from regbench.regularizers.base import RegularizerConfigError

    strategy = hardware_cfg.get("strategy", "auto")
    devices, nodes = hardware_cfg.get("devices", 1), int(hardware_cfg.get("num_nodes", 1) or 1)
    if isinstance(strategy, str):
        name = strategy.lower()
        if name.endswith("find_unused_parameters_true") or name in ("single_device", "dp"):
            return None
        if name == "auto":
            if devices in (1, "1", [0], None) and nodes == 1:
                return None
            name = "ddp"
        if name in UNUSED_PARAMETER_STRATEGIES:
            with open_dict(hardware_cfg):
                hardware_cfg.strategy = UNUSED_PARAMETER_STRATEGIES[name]
            return f"hardware.strategy={strategy} -> {hardware_cfg.strategy} ({why})"
        raise RegularizerConfigError(
            f"hardware.strategy={strategy!r}: {why}, which this strategy is not known to allow; use a DDP "
            f"strategy (hardware=ddp, ddp_cpu; find_unused_parameters is turned on) or a single device")
    target = str(strategy.get("_target_", "")) if hasattr(strategy, "get") else ""
    if target.rsplit(".", 1)[-1] == "DDPStrategy":
        if strategy.get("find_unused_parameters") is True:
            return None
        with open_dict(strategy):
            strategy.find_unused_parameters = True
        return f"hardware.strategy.find_unused_parameters=true ({why})"
    raise RegularizerConfigError(
        f"hardware.strategy._target_={target or strategy!r}: {why}, which this strategy is not known to allow; "
        f"use a DDP strategy (hardware=ddp, ddp_cpu) or a single device")


def global_rank() -> int:
    """This process's global rank as the launcher set it (0 for a single process)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_global_zero() -> bool:
    """True in the process that owns the run's files (config.yaml, metrics.json, wandb_id)."""
    return global_rank() == 0


@contextlib.contextmanager
def single_run_relaunch(output_dir: str) -> Iterator[None]:
    """Make Lightning's DDP child processes re-run *this* job, not the whole sweep.

    Lightning starts ranks 1..N-1 by re-running ``sys.argv`` plus ``hydra.run.dir=<HydraConfig
    run.dir>``. In a multirun, ``sys.argv`` holds ``-m`` and the sweep axes, so each child would
    start a new sweep in new dirs. Here the command becomes this job's own overrides, and its run
    dir the job's output dir, so every rank trains the same job in the same dir. Restored on exit.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv, saved_dir = list(sys.argv), hydra_cfg.run.dir
    sys.argv = [sys.argv[0], *_config_selection_flags(sys.argv[1:]), *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = str(output_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_dir


CONFIG_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")


def _config_selection_flags(argv: list[str]) -> list[str]:
    """The flags of ``argv`` that choose the primary config (kept for the children), with their values."""
    kept, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            kept += argv[i:i + 2]
            i += 1
        elif arg.split("=", 1)[0] in CONFIG_FLAGS:
            kept.append(arg)
        i += 1
    return kept


# Set by Lightning in the launching process when it starts DDP children; left behind they make the
# next job of an in-process sweep believe its ranks already exist (and wait for them forever).
DDP_ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK", "GROUP_RANK")


@contextlib.contextmanager
def isolated_process_group() -> Iterator[None]:
    """Restore the DDP environment variables and close the process group when a run ends.

    Only needed when several runs share one process (Hydra's basic multirun launcher).
    """
    saved = {key: os.environ.get(key) for key in DDP_ENV_KEYS}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TransformerLayerWrapPolicy:
    """FSDP auto-wrap policy for Hugging Face models: one FSDP unit per transformer block.

    The blocks come from :func:`regbench.models.structure.block_classes` (the structure module's
    per-family layout; families it does not know fall back to the classes a model lists in
    ``_no_split_modules``), read from the first module FSDP asks about (the root) while it walks the
    tree top-down, so one policy serves BERT, RoBERTa, BART, T5 and BERT2BERT without naming their
    classes. ``extra_classes`` adds class names. Everything outside the blocks (embeddings, heads)
    lands in the root unit.
    """

    def __init__(self, extra_classes: list[str] | tuple[str, ...] = ()):
        self.block_classes: set[str] = set(extra_classes)
        self._read_structure = False

    def __call__(self, module: Any, recurse: bool, nonwrapped_numel: int = 0) -> bool:
        if recurse:  # asked whether to descend: always; the first call (the root) tells the blocks
            if not self._read_structure:
                from regbench.models.structure import block_classes

                self.block_classes |= block_classes(module)
                self._read_structure = True
            return True
        return type(module).__name__ in self.block_classes
