"""Fixtures for the sweep layer: a stand-in Hydra training app with the real entry-point shape.

``fake_app`` writes a ``train.py`` + ``conf/`` (groups task/glue, backbone, regularizer) into
tmp_path whose job writes ``metrics.json`` per the run-output contract. Its metric is a known
function of the config (so tests can aggregate by hand) and it can be told to fail
(``regularizer.tlm.explode=true``, recorded as ``status: failed`` unless ``raise_on_failure``) or to
die hard (``regularizer.tlm.hard_crash=true``: ``os._exit``). Its regularizer group has the real
shape: each option nested under its name, several selectable at once. Every job appends its cell id to
``launches.log`` so tests see exactly which cells were launched.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

FAKE_TRAIN = textwrap.dedent(
    '''
    import json, os
    import hydra
    from hydra.core.hydra_config import HydraConfig


    def write(out, payload):
        tmp = os.path.join(out, ".metrics.json.tmp")
        with open(tmp, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, os.path.join(out, "metrics.json"))


    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    def main(cfg):
        hc = HydraConfig.get()
        out = hc.runtime.output_dir
        with open(cfg.launch_log, "a") as f:
            f.write(hc.runtime.choices.get("sweep_cell", "-") + "\\n")
        tlm = cfg.regularizer.get("tlm") or {}
        base = {"task": cfg.task.name, "backbone": cfg.backbone.name, "regularizer": "+".join(cfg.regularizer),
                "seed": cfg.seed, "main_metric": "validation/accuracy", "output_dir": out,
                "error": None, "failed_step": None}
        write(out, {**base, "status": "running"})
        if tlm.get("hard_crash"):
            os._exit(3)
        try:
            if tlm.get("explode"):
                raise RuntimeError("deliberate failure")
            acc = cfg.task.base + tlm.get("p", 0.0) / 10 + cfg.seed / 100
            metrics = {"validation/accuracy": acc, "validation/f1": acc / 2}
            write(out, {**base, "status": "ok", "best": metrics, "final": metrics, "best_step": 1,
                        "train_steps": cfg.trainer.max_steps, "logger": dict(cfg.logger)})
        except Exception as exc:
            write(out, {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}", "failed_step": 0})
            if cfg.raise_on_failure:
                raise


    if __name__ == "__main__":
        main()
    '''
)

CONF = {
    "config.yaml": """
        defaults:
          - task: glue/rte
          - backbone: tiny
          - regularizer: none
          - logger: csv
          - _self_
        seed: 0
        raise_on_failure: true
        launch_log: LAUNCH_LOG
        trainer:
          max_steps: 100
        """,
    "task/glue/rte.yaml": "# @package task\nname: rte\nbase: 0.6\nlocal_dir: glue/RTE\n",
    "task/glue/mrpc.yaml": "# @package task\nname: mrpc\nbase: 0.7\nlocal_dir: glue/MRPC\n",
    "backbone/tiny.yaml": "name: tiny\n",
    "regularizer/none.yaml": "none: {}\n",
    "regularizer/tlm.yaml": "tlm:\n  p: 0.9\n  explode: false\n  hard_crash: false\n",
    "regularizer/mixout.yaml": "mixout:\n  p: 0.7\n",
    "logger/csv.yaml": "name: csv\n",
    "logger/wandb.yaml": "name: wandb\nwandb:\n  group: null\n  name: null\n",
}


@pytest.fixture
def fake_app(tmp_path: Path) -> Path:
    """A project dir with train.py + conf/ (see module docstring); returns its path."""
    root = tmp_path / "project"
    for rel, text in CONF.items():
        path = root / "conf" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text).replace("LAUNCH_LOG", str(root / "launches.log"))
        path.write_text(text)
    (root / "train.py").write_text(FAKE_TRAIN)
    return root


@pytest.fixture
def launched(fake_app: Path):
    """``launched()`` -> the cell ids the fake app has run so far, in order."""

    def read() -> list[str]:
        log = fake_app / "launches.log"
        return log.read_text().split() if log.exists() else []

    return read
