"""`sweep run --detach` on a simulated SLURM: a stand-in `sbatch` on PATH takes the submission,
then the test runs the submitted job as SLURM would (the job's command line, SLURM's environment
variables of tests/hardware/test_slurm.py), and the driver job runs the sweep."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

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
    # submitted from its own process, as a user runs it (submitit reconfigures logging on import)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    submit = subprocess.run([sys.executable, "-m", "regbench.sweep", *args, "--detach", "--driver-partition", "cpu",
                             "--driver-time", "600"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
    assert "submitted the sweep driver as SLURM job 4243" in submit.stdout
    assert launched() == []  # returned at once: nothing ran yet

    script = (sweep_dir / ".driver" / "4243_submission.sh").read_text()
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --time=600" in script
    assert "#SBATCH --cpus-per-task=1" in script and "srun" not in script  # one small task, no job step
    command = [line for line in script.splitlines() if "submitit.core._submit" in line][0]

    env.update(SLURM_ENV, SLURM_JOB_ID="4243", SUBMITIT_EXECUTOR="slurm")
    job = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    assert sorted(launched()) == ["none__glue-rte__seed1", "tlm__glue-rte__seed1"]
    for cell in launched():
        assert json.loads((sweep_dir / cell / "metrics.json").read_text())["status"] == "ok"

    import pickle

    # the driver's outcome as submitit recorded it: exit status 0, every cell ok
    assert pickle.loads((sweep_dir / ".driver" / "4243_0_result.pkl").read_bytes()) == ("success", 0)
