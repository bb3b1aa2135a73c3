"""benchmarks/throughput.py --torchmetrics-lazy-optional: the copy of torchmetrics it measures with
imports without scipy.signal and matplotlib (what torchmetrics#3457 would change), and still works."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from tests.conftest import REPO


def test_the_overlay_drops_exactly_the_eager_optional_imports(tmp_path):
    spec = importlib.util.spec_from_file_location("throughput_bench", REPO / "benchmarks" / "throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    overlay = bench.torchmetrics_without_eager_imports(tmp_path / "overlay")
    probe = ("import sys, lightning, torch, torchmetrics\n"
             "from torchmetrics.functional import pearson_corrcoef\n"
             "assert torchmetrics.__file__.startswith(sys.argv[1]), torchmetrics.__file__\n"
             "assert abs(float(pearson_corrcoef(torch.tensor([1., 2., 3.]), torch.tensor([2., 4., 7.]))) - 0.9934) < 1e-3\n"
             "print(sorted(m for m in ('scipy.signal', 'matplotlib', 'matplotlib.pyplot') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(overlay)}
    proc = subprocess.run([sys.executable, "-c", probe, str(overlay)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
