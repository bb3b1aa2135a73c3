"""The data-root mapping task -> folder (regbench.sweep.data_root) and the shipped sweeps under it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regbench.sweep.cli import main as cli_main
from regbench.sweep.data_root import FEWCLUE_FOLDERS, TASK_FOLDERS, resolve_task_data
from regbench.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
SHARED_LAYOUT = [  # the folders of ../shared/data (README there), plus the ones it lacks
    "glue/CoLA", "glue/SST-2", "glue/MRPC", "glue/STS-B", "glue/RTE", "glue/WNLI", "glue/QNLI",
    "clue/afqmc", "clue/fewclue/tnews", "clue/fewclue/iflytek", "clue/fewclue/csl", "clue/fewclue/cluewsc",
    "clue/fewclue/ocnli", "d2t/e2e", "d2t/webnlg",
]


def test_every_task_option_has_a_folder():
    options = {str(p.relative_to(REPO / "conf" / "task").with_suffix("")) for p in (REPO / "conf" / "task").rglob("*.yaml")}
    assert options == set(TASK_FOLDERS)
    assert set(FEWCLUE_FOLDERS) <= set(TASK_FOLDERS)


def test_clue_reads_the_full_folder_when_present_else_the_fewclue_copy(tmp_path):
    (tmp_path / "clue" / "fewclue" / "cluewsc").mkdir(parents=True)
    (tmp_path / "clue" / "fewclue" / "tnews").mkdir(parents=True)
    (tmp_path / "clue" / "tnews").mkdir(parents=True)
    wsc = resolve_task_data(tmp_path, "clue/cluewsc2020")
    assert (wsc.path, wsc.fewclue, wsc.problems) == (tmp_path / "clue" / "fewclue" / "cluewsc", True, ())
    tnews = resolve_task_data(tmp_path, "clue/tnews")
    assert (tnews.path, tnews.fewclue) == (tmp_path / "clue" / "tnews", False)
    cmnli = resolve_task_data(tmp_path, "clue/cmnli")  # no FewCLUE copy exists for CMNLI
    assert cmnli.path == tmp_path / "clue" / "cmnli" and cmnli.problems == ("no such folder: its cells will fail",)


def test_missing_files_are_named_from_the_task_yaml(tmp_path):
    (tmp_path / "glue" / "QNLI").mkdir(parents=True)
    (tmp_path / "glue" / "QNLI" / "dev.tsv").write_text("")
    qnli = resolve_task_data(tmp_path, "glue/qnli", REPO / "conf")
    assert qnli.problems and "lacks train: train.tsv" in qnli.problems[0]
    few = tmp_path / "clue" / "fewclue" / "csl"
    few.mkdir(parents=True)
    for name in ("train_few_all.json", "dev_few_all.json"):
        (few / name).write_text("")
    assert resolve_task_data(tmp_path, "clue/csl", REPO / "conf").problems == ()  # FewCLUE names count


@pytest.mark.parametrize("name", ["tlm_glue", "tlm_clue", "tlm_d2t", "mixout_glue"])
def test_dry_run_of_a_shipped_sweep_with_a_data_root_sets_each_cells_data_dir(name, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REGBENCH_DATA", raising=False)
    root = tmp_path / "data"
    for folder in SHARED_LAYOUT:
        (root / folder).mkdir(parents=True)
    sweep_dir = tmp_path / "runs"
    rc = cli_main(["run", name, "--scale", "mini", "--dry-run", "--project-dir", str(REPO),
                   "--sweep-dir", str(sweep_dir), "--data-root", str(root)])
    out = capsys.readouterr().out
    assert rc == 0, out
    jobs = dict(re.findall(r"\n  \[(\S+)\]\n    (.*)", out))
    cells = load_sweep(REPO / "sweeps" / f"{name}.yaml").cells("mini")
    assert set(jobs) == {c.id for c in cells}
    for cell in cells:
        task = cell.overrides["task"]
        folder = FEWCLUE_FOLDERS[task] if task in FEWCLUE_FOLDERS and not (root / TASK_FOLDERS[task]).is_dir() else TASK_FOLDERS[task]
        assert f" task.data_dir={root / folder} " in jobs[cell.id], (cell.id, jobs[cell.id])
    assert not sweep_dir.exists()
