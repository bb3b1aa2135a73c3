"""The data-root mapping task -> folder (regbench.sweep.data_root) and the shipped sweeps under it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regbench.sweep.cli import main as cli_main
from regbench.sweep.data_root import DataRootError, resolve_task_data, task_config
from regbench.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
TASK_OPTIONS = sorted(str(p.relative_to(CONF / "task").with_suffix("")) for p in (CONF / "task").rglob("*.yaml"))
SHARED_LAYOUT = [  # the folders of ../shared/data (README there), plus the ones it lacks
    "glue/CoLA", "glue/SST-2", "glue/MRPC", "glue/STS-B", "glue/RTE", "glue/WNLI", "glue/QNLI",
    "clue/afqmc", "clue/fewclue/tnews", "clue/fewclue/iflytek", "clue/fewclue/csl", "clue/fewclue/cluewsc",
    "clue/fewclue/ocnli", "d2t/e2e", "d2t/webnlg",
]


def test_every_task_option_names_its_folder_in_its_own_config():
    folders = {task: task_config(CONF, task).get("local_dir") for task in TASK_OPTIONS}
    assert all(isinstance(f, str) and f for f in folders.values()), folders
    assert folders["glue/sst2"] == "glue/SST-2" and folders["d2t/e2e"] == "d2t/e2e"
    few = {t: task_config(CONF, t).get("fewclue_local_dir") for t in TASK_OPTIONS}
    assert {t for t, f in few.items() if f} == {"clue/tnews", "clue/iflytek", "clue/csl", "clue/cluewsc2020", "clue/ocnli"}


def test_clue_reads_the_full_folder_when_present_else_the_fewclue_copy(tmp_path):
    (tmp_path / "clue" / "fewclue" / "cluewsc").mkdir(parents=True)
    (tmp_path / "clue" / "fewclue" / "tnews").mkdir(parents=True)
    (tmp_path / "clue" / "tnews").mkdir(parents=True)
    wsc = resolve_task_data(tmp_path, "clue/cluewsc2020", CONF)
    assert (wsc.path, wsc.fewclue) == (tmp_path / "clue" / "fewclue" / "cluewsc", True)
    assert wsc.problems and "lacks train" in wsc.problems[0]  # empty folder: its files are named
    tnews = resolve_task_data(tmp_path, "clue/tnews", CONF)
    assert (tnews.path, tnews.fewclue) == (tmp_path / "clue" / "tnews", False)
    cmnli = resolve_task_data(tmp_path, "clue/cmnli", CONF)  # no FewCLUE copy exists for CMNLI
    assert cmnli.path == tmp_path / "clue" / "cmnli" and cmnli.problems == ("no such folder: its cells will fail",)


def test_a_task_config_without_local_dir_is_a_clear_error(tmp_path):
    (tmp_path / "task" / "glue").mkdir(parents=True)
    (tmp_path / "task" / "glue" / "rte.yaml").write_text("name: rte\n")
    with pytest.raises(DataRootError, match=r"conf/task/glue/rte.yaml has no 'local_dir'"):
        resolve_task_data(tmp_path, "glue/rte", tmp_path)
    with pytest.raises(DataRootError, match=r"no task option 'glue/xyz'"):
        resolve_task_data(tmp_path, "glue/xyz", tmp_path)


def test_missing_files_are_named_from_the_task_yaml(tmp_path):
    (tmp_path / "glue" / "QNLI").mkdir(parents=True)
    (tmp_path / "glue" / "QNLI" / "dev.tsv").write_text("")
    qnli = resolve_task_data(tmp_path, "glue/qnli", CONF)
    assert qnli.problems and "lacks train: train.tsv" in qnli.problems[0]
    few = tmp_path / "clue" / "fewclue" / "csl"
    few.mkdir(parents=True)
    for name in ("train_few_all.json", "dev_few_all.json"):
        (few / name).write_text("")
    assert resolve_task_data(tmp_path, "clue/csl", CONF).problems == ()  # FewCLUE names count


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
        cfg = task_config(CONF, task)
        few = cfg.get("fewclue_local_dir")
        folder = few if few and not (root / cfg["local_dir"]).is_dir() else cfg["local_dir"]
        assert f" task.data_dir={root / folder} " in jobs[cell.id], (cell.id, jobs[cell.id])
    assert not sweep_dir.exists()
