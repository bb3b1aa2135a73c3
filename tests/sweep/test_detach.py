"""`sweep run --detach` on a simulated SLURM: a stand-in `sbatch` on PATH takes the submission,
then the test runs the submitted job as SLURM would (the job's command line, SLURM's environment
variables of tests/hardware/test_slurm.py), and the driver job runs the sweep."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import yaml

from regbench.sweep.cli import main as cli_main
from tests.conftest import REPO
from tests.hardware.test_slurm import SLURM_ENV

FAKE_SBATCH = """#!/bin/sh
echo "$@" >> "{log}"
echo "Submitted batch job 4243"
"""


def test_detach_submits_the_driver_and_returns_then_the_job_runs_the_sweep(fake_app, tmp_path, monkeypatch, capsys,
                                                                          launched):
    # the fake app's stand-in for launcher=slurm runs the cells in the driver's process
    (fake_app / "conf" / "launcher").mkdir()
    (fake_app / "conf" / "launcher" / "slurm.yaml").write_text("# @package _global_\n{}\n")
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "axes": {"regularizer": ["none", "tlm"], "task": ["glue/rte"], "seed": [1]},
        "scales": {"full": {}, "mini": {}},
        "report": {"rows": ["regularizer"], "metric": "validation/accuracy"},
    }, sort_keys=False))
    bin_dir, sweep_dir = tmp_path / "bin", tmp_path / "runs"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(log=tmp_path / "sbatch.log"))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 99\n")  # submitit looks for it; the driver job must not use it
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)

    args = ["run", str(sweep_file), "--project-dir", str(fake_app), "--sweep-dir", str(sweep_dir),
            "hydra/job_logging=disabled"]
    assert cli_main([*args, "--detach"]) == 2  # refused: the cells would train inside the driver job
    assert "the cells need launcher=slurm" in capsys.readouterr().err
    args.append("+launcher=slurm")
    assert cli_main([*args, "--detach", "--driver-partition", "cpu", "--driver-time", "600"]) == 0
    out = capsys.readouterr().out
    assert "submitted the sweep driver as SLURM job 4243" in out
    assert launched() == []  # returned at once: nothing ran yet

    script = (sweep_dir / ".driver" / "4243_submission.sh").read_text()
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --time=600" in script
    assert "#SBATCH --cpus-per-task=1" in script and "srun" not in script  # one small task, no job step
    command = [line for line in script.splitlines() if "submitit.core._submit" in line][0]

    env = {**os.environ, **SLURM_ENV, "SLURM_JOB_ID": "4243", "SUBMITIT_EXECUTOR": "slurm",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    job = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    assert sorted(launched()) == ["none__glue-rte__seed1", "tlm__glue-rte__seed1"]
    for cell in launched():
        assert json.loads((sweep_dir / cell / "metrics.json").read_text())["status"] == "ok"

    import submitit

    result = submitit.SlurmJob(sweep_dir / ".driver", "4243").result()
    assert result == 0  # the driver's exit status: every cell ok
