"""A job started by submitit on SLURM, simulated with SLURM's environment variables on one CPU."""

from __future__ import annotations

import json
import signal

from tests.conftest import compose_config

SLURM_ENV = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "regbench-rte", "SLURM_JOB_ID": "4242",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "node1"}


def test_slurm_job_trains_with_lightning_requeue_off_so_submitit_owns_it(glue_root, tiny_run_overrides, tmp_path,
                                                                         monkeypatch):
    import lightning as L
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from regbench import checkpointing
    from regbench.train import run

    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    seen = {}

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["env"] = trainer._accelerator_connector.cluster_environment
            seen["sigusr1"] = signal.getsignal(signal.SIGUSR1)

    original = checkpointing.checkpoint_callbacks
    monkeypatch.setattr(checkpointing, "checkpoint_callbacks", lambda *a: [*original(*a), Probe()])
    before = signal.getsignal(signal.SIGUSR1)
    out = tmp_path / "run"
    cfg = compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "launcher=slurm", "trainer.max_epochs=1"), out)
    run(cfg)

    assert isinstance(seen["env"], SLURMEnvironment) and seen["env"].auto_requeue is False
    assert seen["env"].job_id() == 4242
    assert seen["sigusr1"] is before  # Lightning installed no requeue handler: submitit's signal is the only one
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["train_steps"] == 6

    # A requeued job is the same pickled job: same config, same run dir. It resumes and ends at once.
    run(compose_config(tiny_run_overrides("glue/rte", glue_root / "rte", "launcher=slurm", "trainer.max_epochs=1"), out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["resumes"][-1]["step"] == 6 and len(record["history"]) == 1
