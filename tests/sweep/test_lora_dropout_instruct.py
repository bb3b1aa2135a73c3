"""sweeps/lora_dropout_instruct.yaml at its CI scale: the shipped sweep file run through the sweep CLI
(Hydra's basic launcher, in process) on a tiny Llama and Alpaca/MMLU fixture files, then reported."""

from __future__ import annotations

import csv
import json

import pytest

from regbench.sweep.cli import main as cli_main
from regbench.sweep.spec import load_sweep
from tests.decoder_fixtures import write_alpaca, write_mmlu
from tests.sweep.test_e2e_mini import REPO

SWEEP = REPO / "sweeps" / "lora_dropout_instruct.yaml"


def test_scales_name_the_protocol_backbones():
    sweep = load_sweep(SWEEP)
    assert sweep.fixed_for("full")["backbone"] == "llama2-7b" and sweep.fixed_for("mini")["backbone"] == "smollm2-135m"
    assert len(sweep.cells("full")) == 4 and len(sweep.cells("mini")) == 3 and len(sweep.cells("smoke")) == 2


@pytest.mark.slow  # ~40 s on 2 cores (two cells through Hydra, a 4 x 2-step loss and an 8-pass ensemble)
def test_smoke_scale_runs_and_reports(tiny_decoders, tmp_path, capsys):
    data = tmp_path / "alpaca"
    write_alpaca(data / "alpaca_data_cleaned.json")
    write_mmlu(data / "mmlu")
    sweep_dir = tmp_path / "runs"
    args = ["--scale", "smoke", "--project-dir", str(REPO), "--sweep-dir", str(sweep_dir)]
    rc = cli_main(["run", str(SWEEP), *args, f"backbone.path={tiny_decoders['llama']}", f"task.data_dir={data}",
                   f"data.cache_dir={tmp_path / 'cache'}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}
    assert sorted(records) == ["lora__instruct-alpaca__seed1", "lora_dropout-N-sample-loss-+-ensemble__instruct-alpaca__seed1"]
    for record in records.values():
        assert record["status"] == "ok" and set(record["final"]) == {"mmlu/accuracy"}
    ensemble = records["lora_dropout-N-sample-loss-+-ensemble__instruct-alpaca__seed1"]["regularizer_params"]
    assert "lora_dropout" in json.dumps(ensemble) and '"ensemble_passes": 8' in json.dumps(ensemble)
    assert cli_main(["report", str(SWEEP), *args]) == 0
    with open(sweep_dir / "report" / "lora_dropout_instruct_smoke.csv") as f:
        rows = {r["regularizer"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"lora", "lora_dropout N-sample loss + ensemble"}
    for label, row in rows.items():
        cell = next(r for name, r in records.items() if name.startswith(label.replace(" ", "-") + "__"))
        assert float(row["mean"]) == 100 * cell["final"]["mmlu/accuracy"]
