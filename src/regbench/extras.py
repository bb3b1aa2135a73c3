"""Optional extras (``pip install 'regbench[<extra>]'``): which features need which packages,
checked before any data or weights are read so a missing one fails at once with the command.

Loggers name their package in their config (``logger.<name>.requires``, :mod:`regbench.loggers`);
hardware presets likewise (``hardware.requires``, :mod:`regbench.hardware`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

EXTRAS = {
    "d2t": ("sacrebleu", "rouge_score"),                                # data-to-text metrics (BLEU, ROUGE-L)
    "slurm": ("submitit", "hydra_plugins.hydra_submitit_launcher"),     # launcher=local|slurm, sweep run --detach
    "wandb": ("wandb",),
    "tensorboard": ("tensorboard",),
    "bench": ("accelerate",),                                           # benchmarks/throughput.py's HF Trainer
}
SUBMITIT_OVERRIDES = ("launcher=local", "launcher=slurm", "hydra/launcher=submitit_local", "hydra/launcher=submitit_slurm")


class MissingExtraError(ImportError):
    """A feature in use needs an optional extra that is not installed."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def require_extra(extra: str, feature: str) -> None:
    missing = [m for m in EXTRAS[extra] if not _installed(m)]
    if missing:
        raise MissingExtraError(f"{feature} needs {', '.join(missing)} (optional extra {extra!r}): "
                                f"pip install 'regbench[{extra}]' (from a checkout: pip install -e '.[{extra}]')")


def check_config_extras(cfg: Any) -> None:
    """Extras the composed run config needs (task kinds with optional metrics)."""
    if cfg.task.kind == "generation":
        require_extra("d2t", f"task {cfg.task.family}/{cfg.task.name} (BLEU, ROUGE-L)")


def check_argv_extras(argv: list[str]) -> None:
    """Extras a command line needs before Hydra composes it (a missing launcher plugin would
    otherwise read as an unknown config option)."""
    for arg in argv:
        if arg.lstrip("+") in SUBMITIT_OVERRIDES:
            require_extra("slurm", arg.lstrip("+"))
