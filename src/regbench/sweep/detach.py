"""``sweep run --detach``: submit the sweep driver itself as a small SLURM job and return.

Hydra's submitit launcher (``launcher=slurm``) submits the cells as a job array and then *waits*
for every job: the command must stay alive for the whole sweep (on a login node, inside tmux).
``--detach`` submits that same command (``sweep run <sweep> <options> <overrides>``, without
``--detach``) with submitit as a one-CPU job and exits at once; the driver job then submits the
array, waits for it, and marks crashed cells, as the foreground command would. Progress:
``sweep status <sweep>`` (reads the run dirs) or the driver's log in ``<sweep dir>/.driver/``.

The driver job does not use ``srun`` (submitit's ``use_srun=False``): the array it submits must
not inherit a job step's environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIVER_DIRNAME = ".driver"


@dataclass
class DriverJob:
    job_id: str
    log: Path
    folder: Path


def run_driver(argv: list[str], cwd: str) -> int:
    """The detached job's body: the same ``sweep run`` command, in the submitting directory."""
    from regbench.sweep.cli import main

    os.chdir(cwd)
    return main(argv)


def driver_parameters(name: str, time_min: int, partition: str | None, account: str | None,
                      qos: str | None, setup: list[str] | None = None) -> dict[str, Any]:
    """submitit parameters of the driver job: one task, one CPU, little memory, long time limit."""
    params: dict[str, Any] = {"name": name, "timeout_min": int(time_min), "nodes": 1, "tasks_per_node": 1,
                              "cpus_per_task": 1, "mem_gb": 4, "slurm_use_srun": False}
    extra = {"partition": partition, "account": account, "qos": qos}
    params.update({f"slurm_{k}": v for k, v in extra.items() if v})
    if setup:
        params["slurm_setup"] = list(setup)
    return params


def submit_driver(argv: list[str], sweep_dir: Path, name: str, time_min: int, partition: str | None = None,
                  account: str | None = None, qos: str | None = None, setup: list[str] | None = None) -> DriverJob:
    """Submit ``run_driver(argv)`` to SLURM (``sbatch`` through submitit); returns at once."""
    from regbench.extras import MissingExtraError, require_extra

    try:
        require_extra("slurm", "sweep run --detach")
    except MissingExtraError as err:
        raise ValueError(str(err)) from None
    import submitit

    folder = sweep_dir / DRIVER_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**driver_parameters(name, time_min, partition, account, qos, setup))
    job = executor.submit(run_driver, list(argv), os.getcwd())
    return DriverJob(str(job.job_id), Path(job.paths.stdout), folder)
