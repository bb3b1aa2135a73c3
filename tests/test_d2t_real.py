"""Opt-in (slow): BERT2BERT warm-started from the real MiniLM, trained briefly on the real E2E dev
set from ``$REGBENCH_DATA/d2t/e2e`` (default ../shared/data), scored on real multi-reference test MRs.

Run: ``make test ARGS="-m slow tests/test_d2t_real.py"`` (about 10-15 minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_config

E2E = Path(os.environ.get("REGBENCH_DATA", REPO.parent / "shared" / "data")) / "d2t" / "e2e"


@pytest.mark.slow
@pytest.mark.skipif(not (E2E / "devset.csv").is_file(), reason=f"no E2E copy at {E2E} (set REGBENCH_DATA)")
def test_minilm_bert2bert_on_real_e2e_generates_mr_conditioned_text(tmp_path):
    from regbench.train import run

    out = tmp_path / "run"
    run(compose_config(["experiment=d2t_e2e_bert2bert_minilm", f"task.data_dir={E2E}", "logger=none",
                        f"data.cache_dir={tmp_path / 'cache'}", "data.eval_limit=50"], out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok"
    print("E2E test BLEU (50 MRs):", record["final"])
    assert record["final"]["test/bleu"] > 20.0
    rows = [json.loads(line) for line in next((out / "predictions").glob("test_step*.jsonl")).open()]
    named = sum(re.search(r"name\[([^\]]+)\]", r["source"]).group(1).lower() in r["prediction"].lower() for r in rows)
    assert named / len(rows) > 0.5  # conditioned on the MR: it names the restaurant it was given
