"""The `regbench` console script from a non-editable install: a wheel built from this checkout,
installed into a fresh venv, run from a folder without a checkout (train, sweep, export, user
config folder). Slow (a wheel build and a venv): `make test-all` or `pytest -m slow`.

The venv reuses the test interpreter's installed packages through a .pth file (offline, no
downloads); its own site-packages come first, so `regbench` is the wheel's.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src", "conf", "experiments", "sweeps")


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("installed")
    checkout = tmp / "checkout"
    checkout.mkdir()
    for name in SOURCES:  # a copy, so the build leaves nothing in the working tree
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, checkout / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(checkout),
                    "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("regbench-*.whl")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    target = Path(subprocess.run([str(env_dir / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    (target / "shared-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    return env_dir


def _run(venv: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_console_script_trains_sweeps_and_exports_from_an_installed_wheel(venv, tiny_bert, glue_root, tmp_path):
    work = tmp_path / "work"  # no checkout here: configs and sweeps come from the package
    work.mkdir()
    where = _run(venv, work, str(venv / "bin" / "python"), "-c", "import regbench; print(regbench.__file__)").stdout
    assert where.startswith(str(venv)), where
    assert "regbench train" in _run(venv, work, "regbench", "--help").stdout
    assert "tlm_glue" in _run(venv, work, "regbench", "sweep", "list").stdout

    tiny = [f"task.data_dir={glue_root / 'rte'}", f"backbone.path={tiny_bert}", "data.max_length=32",
            f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "optim.lr=1e-3"]
    run_dir = tmp_path / "run"
    _run(venv, work, "regbench", "train", "task=glue/rte", *tiny, f"hydra.run.dir={run_dir}")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "ok"
    assert f"run dir: {run_dir}" in (run_dir / "train.log").read_text()

    # a user's own config folder joins the search path
    (work / "myconf" / "regularizer").mkdir(parents=True)
    (work / "myconf" / "regularizer" / "strong_dropout.yaml").write_text("name: dropout\nrate: 0.3\n")
    cfg = _run(venv, work, "regbench", "train", "--config-dir", "myconf", "regularizer=strong_dropout", "--cfg", "job").stdout
    assert "rate: 0.3" in cfg

    sweep = work / "mine.yaml"
    sweep.write_text(textwrap.dedent(f"""
        axes: {{regularizer: [none], task: [glue/rte], seed: [1]}}
        fixed: {{task.data_dir: {glue_root / 'rte'}, backbone.path: {tiny_bert}, data.max_length: 32,
                 trainer.max_epochs: 1, checkpoint.enabled: false, data.cache_dir: {tmp_path / 'cache'}}}
        scales: {{full: {{}}, mini: {{}}}}
        report: {{rows: [regularizer], column: task, metric: validation/accuracy}}
    """))
    _run(venv, work, "regbench", "sweep", "run", str(sweep), "--sweep-dir", str(tmp_path / "sweep"))
    assert json.loads((tmp_path / "sweep" / "none__glue-rte__seed1" / "metrics.json").read_text())["status"] == "ok"
    assert "1 ok" in _run(venv, work, "regbench", "sweep", "status", str(sweep), "--sweep-dir", str(tmp_path / "sweep")).stdout

    _run(venv, work, "regbench", "export", str(run_dir), str(tmp_path / "export"))
    assert (tmp_path / "export" / "config.json").is_file() and (tmp_path / "export" / "README.md").is_file()
