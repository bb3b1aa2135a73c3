"""``--data-root DIR`` / ``REGBENCH_DATA``: point every task of a sweep at its local copy.

The task configs (``conf/task/**``) say how to read a local folder (``task.data_dir`` +
``task.files``); this module only knows *where* each task's folder sits under one data root. The
layout is the one of the official distributions, as in ``../shared/data``::

    <root>/glue/{CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI}
    <root>/clue/{afqmc,tnews,iflytek,cmnli,ocnli,cluewsc2020,csl}
    <root>/clue/fewclue/{tnews,iflytek,csl,cluewsc,ocnli}       (FewCLUE copies)
    <root>/d2t/{e2e,webnlg,dart,rotowire}

CLUE rule: a task reads the full CLUE folder ``clue/<task>`` when the root has it, else its FewCLUE
copy ``clue/fewclue/<name>`` when the root has that (the CLUE loader then picks the FewCLUE file
names ``train_few_all.json`` / ``dev_few_all.json``), else ``clue/<task>`` (the run fails with the
loader's missing-file message). A cell whose sweep file sets ``task.data_dir`` itself keeps it, and a
``task.data_dir=...`` on the command line wins over both.

Only the standard library and OmegaConf are used (``--dry-run`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

ENV_VAR = "REGBENCH_DATA"

# task option (conf/task/<option>.yaml) -> folder under the data root
TASK_FOLDERS: dict[str, str] = {
    "glue/cola": "glue/CoLA",
    "glue/sst2": "glue/SST-2",
    "glue/mrpc": "glue/MRPC",
    "glue/stsb": "glue/STS-B",
    "glue/qqp": "glue/QQP",
    "glue/mnli": "glue/MNLI",
    "glue/qnli": "glue/QNLI",
    "glue/rte": "glue/RTE",
    "glue/wnli": "glue/WNLI",
    "clue/afqmc": "clue/afqmc",
    "clue/tnews": "clue/tnews",
    "clue/iflytek": "clue/iflytek",
    "clue/cmnli": "clue/cmnli",
    "clue/ocnli": "clue/ocnli",
    "clue/cluewsc2020": "clue/cluewsc2020",
    "clue/csl": "clue/csl",
    "d2t/e2e": "d2t/e2e",
    "d2t/webnlg": "d2t/webnlg",
    "d2t/dart": "d2t/dart",
    "d2t/rotowire": "d2t/rotowire",
}

# CLUE tasks with a FewCLUE copy: used when the full CLUE folder is absent (AFQMC and CMNLI have none)
FEWCLUE_FOLDERS: dict[str, str] = {
    "clue/tnews": "clue/fewclue/tnews",
    "clue/iflytek": "clue/fewclue/iflytek",
    "clue/csl": "clue/fewclue/csl",
    "clue/cluewsc2020": "clue/fewclue/cluewsc",
    "clue/ocnli": "clue/fewclue/ocnli",
}


class DataRootError(ValueError):
    """The data root cannot serve a task of the sweep (no known folder for it)."""


@dataclass(frozen=True)
class TaskData:
    """Where one task reads its data under the root, and what looks wrong there (warnings)."""

    task: str
    path: Path
    folder: str                      # relative to the root
    fewclue: bool = False
    problems: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        text = f"{self.task} -> {self.path}"
        if self.fewclue:
            text += " (FewCLUE copy: the root has no full CLUE folder)"
        if self.problems:
            text += "  WARNING: " + "; ".join(self.problems)
        return text


def resolve_task_data(root: Path, task: str, conf_dir: Path | None = None) -> TaskData:
    """The folder of ``task`` under ``root`` (rule in the module docstring), with missing-file
    warnings from the task's YAML (``task.files`` / ``task.fewclue_files``) when ``conf_dir`` is given."""
    if task not in TASK_FOLDERS:
        raise DataRootError(
            f"--data-root: no folder known for task {task!r} (known: {', '.join(sorted(TASK_FOLDERS))}); "
            "set task.data_dir for it in the sweep file or on the command line"
        )
    folder, fewclue = TASK_FOLDERS[task], False
    few = FEWCLUE_FOLDERS.get(task)
    if few and not (root / folder).is_dir() and (root / few).is_dir():
        folder, fewclue = few, True
    path = root / folder
    return TaskData(task, path, folder, fewclue, tuple(_problems(path, task, conf_dir)))


def _problems(path: Path, task: str, conf_dir: Path | None) -> list[str]:
    if not path.is_dir():
        return ["no such folder: its cells will fail"]
    option = conf_dir / "task" / f"{task}.yaml" if conf_dir else None
    if option is None or not option.is_file():
        return []
    cfg = OmegaConf.to_container(OmegaConf.load(option), resolve=False) or {}
    files = dict(cfg.get("files") or {})
    fallback = dict(cfg.get("fewclue_files") or {})
    missing = []
    for split in ["train", *(cfg.get("eval_splits") or [])]:
        names = [n for n in (files.get(split), fallback.get(split)) if n]
        if names and not any((path / name).exists() for name in names):
            missing.append(f"{split}: {' or '.join(names)}")
    if not missing:
        return []
    return [f"lacks {', '.join(missing)} (per conf/task/{task}.yaml; its cells will fail unless task.files is overridden)"]
