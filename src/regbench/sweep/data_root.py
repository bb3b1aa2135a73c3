"""``--data-root DIR`` / ``REGBENCH_DATA``: point every task of a sweep at its local copy.

Each task config (``conf/task/**``) says where its folder sits under a data root
(``task.local_dir``; CLUE tasks with a FewCLUE copy also ``task.fewclue_local_dir``) and how to
read it (``task.files``); this module only applies that to a root. The shipped task configs use
the layout of the official distributions, as in ``../shared/data``::

    <root>/glue/{CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI}
    <root>/clue/{afqmc,tnews,iflytek,cmnli,ocnli,cluewsc2020,csl}
    <root>/clue/fewclue/{tnews,iflytek,csl,cluewsc,ocnli}       (FewCLUE copies)
    <root>/d2t/{e2e,webnlg,dart,rotowire}

CLUE rule: a task reads its full CLUE folder (``local_dir``) when the root has it, else its FewCLUE
copy (``fewclue_local_dir``) when the root has that (the CLUE loader then picks the FewCLUE file
names ``train_few_all.json`` / ``dev_few_all.json``), else ``local_dir`` (the run fails with the
loader's missing-file message). A cell whose sweep file sets ``task.data_dir`` itself keeps it, and a
``task.data_dir=...`` on the command line wins over both.

Only the standard library and OmegaConf are used (``--dry-run`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

ENV_VAR = "REGBENCH_DATA"


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


def task_config(conf_dir: Path, task: str) -> dict[str, Any]:
    """The raw YAML of task option ``task`` (``conf/task/<task>.yaml``), unresolved."""
    option = conf_dir / "task" / f"{task}.yaml"
    if not option.is_file():
        known = sorted(str(p.relative_to(conf_dir / "task").with_suffix("")) for p in (conf_dir / "task").rglob("*.yaml"))
        raise DataRootError(f"--data-root: no task option {task!r} (no {option}); task options: {', '.join(known)}")
    return OmegaConf.to_container(OmegaConf.load(option), resolve=False) or {}


def resolve_task_data(root: Path, task: str, conf_dir: Path) -> TaskData:
    """The folder of ``task`` under ``root`` (``task.local_dir``, rule in the module docstring), with
    missing-file warnings from the task's ``files`` / ``fewclue_files``."""
    cfg = task_config(conf_dir, task)
    folder = cfg.get("local_dir")
    if not isinstance(folder, str) or not folder:
        raise DataRootError(
            f"--data-root: conf/task/{task}.yaml has no 'local_dir' (its folder under a data root); add one, "
            "or set task.data_dir for it in the sweep file or on the command line"
        )
    fewclue = False
    few = cfg.get("fewclue_local_dir")
    if few and not (root / folder).is_dir() and (root / few).is_dir():
        folder, fewclue = few, True
    path = root / folder
    return TaskData(task, path, folder, fewclue, tuple(_problems(path, task, cfg)))


def _problems(path: Path, task: str, cfg: dict[str, Any]) -> list[str]:
    if not path.is_dir():
        return ["no such folder: its cells will fail"]
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
