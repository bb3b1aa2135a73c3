"""benchmarks/gpu.sh --dry: the GPU measurement's whole path (every configuration, both frameworks,
FLOPs, the SDPA probe, the table) on CPU with a tiny random BERT and fixture data."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import REPO
from tests.fixtures import write_glue_task


@pytest.mark.slow  # six training processes: ~1 min on 2 cores
def test_gpu_sh_dry_runs_every_configuration_on_cpu(tmp_path):
    write_glue_task(tmp_path / "data" / "glue" / "SST-2", "sst2")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry", "--data", str(tmp_path / "data"), "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    expected = ["trainer", "regbench none", "regbench tlm", "regbench drophead", "regbench mixout"]
    if (REPO / "conf" / "regularizer" / "rdrop.yaml").is_file():
        expected.append("regbench rdrop")
    assert [r["side"] for r in rows] == expected
    for row in rows:
        assert row["samples_per_s"] > 0 and row["tflops_real"] > 0 and row["padded_per_real"] >= 1.0
        assert row["sdpa"]["query"].startswith("torch.float32")  # the probe saw a training call
    tlm = next(r for r in rows if r["side"] == "regbench tlm")
    assert tlm["sdpa"]["mask"].startswith("torch.bool")  # TLM's per-example boolean masks reach SDPA
    assert "| tiny-config | regbench tlm |" in proc.stdout
