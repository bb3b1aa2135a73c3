"""What a run leaves besides metrics.json: one clean log, and experiment loggers that know the run.

One in-process multirun (Hydra's basic launcher: both jobs in one process, as `sweep run` runs
them) with W&B offline and TensorBoard: job 0 fails after its W&B run started, job 1 succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.wandb_records import read_run


@pytest.fixture(scope="module")
def multirun(tiny_bert, glue_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multirun")
    sweep_dir = tmp / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp),
           "REGBENCH_OUTPUT": str(tmp / "stray")}
    cmd = [sys.executable, "train.py", "-m", "task=glue/rte", f"task.data_dir={glue_root / 'rte'}",
           f"backbone.path={tiny_bert}", "logger=[wandb,tensorboard]", "data.max_length=32",
           f"data.cache_dir={tmp / 'cache'}", "trainer.max_epochs=1", "checkpoint.enabled=false",
           "optim.grad_clip=0", "optim.warmup_ratio=0.0", "raise_on_failure=false",
           "sweep.name=demo", "sweep.scale=mini", "sweep.cell=cell-x",
           "optim.lr=1e30,1e-3",  # job 0: non-finite loss at its first steps, job 1: trains
           f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep_dir, proc.stdout + proc.stderr


def _wandb_run(run_dir: Path) -> dict:
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, f"{run_dir}: expected one W&B run, found {files}"
    return read_run(files[0])


def test_each_job_of_an_in_process_multirun_has_its_own_finished_wandb_run(multirun):
    sweep_dir, _ = multirun
    failed, ok = _wandb_run(sweep_dir / "0"), _wandb_run(sweep_dir / "1")
    assert failed["id"] == (sweep_dir / "0" / "wandb_id").read_text() != ok["id"] == (sweep_dir / "1" / "wandb_id").read_text()
    # finished whatever happened: the failed job's run ends with exit code 1, the other with 0
    assert failed["exit_code"] == 1 and ok["exit_code"] == 0
    for run, lr, status in ((failed, 1e30, "failed"), (ok, 1e-3, "ok")):
        assert run["job_type"] == "none"  # the regularizer
        assert {"task:glue/rte", "regularizer:none", "seed:42", "sweep:demo", "scale:mini", "cell:cell-x"} <= set(run["tags"])
        config = run["config"]
        assert config["optim"]["lr"] == lr and config["task"]["name"] == "rte" and config["sweep"]["cell"] == "cell-x"
        assert config["regbench"]["params"]["trainable"] > 0 and config["regbench"]["regularizer"]["name"] == "none"
        assert run["summary"]["status"] == status
    assert ok["summary"]["best"] == json.loads((sweep_dir / "1" / "metrics.json").read_text())["best"]
    assert "non-finite" in failed["summary"]["error"]


def test_csv_and_tensorboard_get_the_config_and_tensorboard_its_hparams_entry(multirun):
    import yaml
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    sweep_dir, _ = multirun
    run_dir = sweep_dir / "1"
    for name in ("csv", "tensorboard"):
        hparams = yaml.safe_load((run_dir / name / "hparams.yaml").read_text())
        assert hparams["optim"]["lr"] == 1e-3 and hparams["regbench"]["params"]["total"] > 0
    events = EventMultiplexer().AddRunsFromDirectory(str(run_dir / "tensorboard"))
    events.Reload()
    plugin = events.PluginRunToTagToContent("hparams")
    assert plugin, "no HPARAMS entry written"
    scalars = {tag for run in events.Runs() for tag in events.GetAccumulator(run).Tags()["scalars"]}
    assert "hp/best/validation/accuracy" in scalars


def test_log_lines_appear_once_without_noise_and_end_with_table_and_run_dir(multirun):
    sweep_dir, output = multirun
    assert output.count("`Trainer.fit` stopped") == 1  # job 1 only (job 0 failed); twice before the fix
    for text in (output, *(p.read_text() for p in sweep_dir.glob("*/train.log"))):
        for noise in ("litlogger", "\x1b[", "LeafSpec", "Saving the dataset", "LOAD REPORT"):
            assert noise not in text, noise
    log = (sweep_dir / "1" / "train.log").read_text()
    assert log.count("GPU available") == 1
    assert "BertForSequenceClassification loaded from" in log  # transformers' report, compacted, in the file
    header, _, metric, status, run_dir = log.rstrip().splitlines()[-5:]
    assert header.split() == ["metric", "final", "best"] and metric.startswith("validation/accuracy")
    assert status.startswith("status=ok") and run_dir == f"run dir: {sweep_dir / '1'}"
    assert f"run dir: {sweep_dir / '0'}" in (sweep_dir / "0" / "train.log").read_text()


def test_transformers_load_report_is_compacted_to_one_plain_line():
    from regbench.logs import NoiseFilter

    report = ("\x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: /m\nKey               | Status  | \n"
              "------------------+---------+-\nclassifier.bias   | MISSING | \nclassifier.weight | MISSING | \n"
              "cls.predictions.bias | UNEXPECTED | \n\nNotes:\n- MISSING:\tthose params were newly initialized")
    record = logging.LogRecord("transformers.modeling_utils", logging.WARNING, "x", 1, report, (), None)
    assert NoiseFilter().filter(record)
    assert record.getMessage() == ("BertForSequenceClassification loaded from /m (MISSING: classifier.bias, "
                                   "classifier.weight; UNEXPECTED: cls.predictions.bias)")
    assert record.levelname == "INFO"
    tip = logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, "x", 1,
                            "💡 Tip: For seamless cloud logging and experiment tracking, try litlogger", (), None)
    assert not NoiseFilter().filter(tip)


def test_a_missing_logger_package_fails_before_any_work_naming_the_extra(monkeypatch):
    import importlib.util

    from regbench.loggers import MissingLoggerError, check_logger_requirements
    from tests.conftest import compose_config

    cfg = compose_config(["logger=tensorboard"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(MissingLoggerError, match=r"regbench\[tensorboard\]"):
        check_logger_requirements(cfg.logger)
