"""GLUE (Wang et al., 2019): hub loader (``nyu-mll/glue``) and the official local TSV layout.

Local files follow ``download_glue_data.py``: TSV with quoting off (SST-2/CoLA sentences contain
bare quotes), UTF-8 with an optional BOM (MRPC), a header row except CoLA. ``task.tsv.columns``
maps each standard column (text keys and ``label``) to a header name or, without header, an index.
Labels given as names (``entailment``) map through ``task.label_names``; regression labels are
finite floats (a ``nan`` score is an error naming the file and line, not a NaN metric later).

Every row must hold every needed column; a short row is an error naming the file, line and the
missing column, except where the official dump itself has such rows: QQP's ``train.tsv`` has a
few, which the GLUE reference processors skip. Tasks that need it set ``tsv.skip_short_rows: true``
(QQP only); the skipped rows are counted, logged and recorded in ``metrics.json`` (``data_skipped``).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from regbench.data import DataError, local_split_paths, read_text, report_skips
from regbench.data.hub import load_hub_dataset

csv.field_size_limit(sys.maxsize)


def check_local_files(task_cfg: Any) -> dict[str, Path]:
    """Each split's TSV, failing fast (every missing file or header column named) before any tokenization."""
    paths = local_split_paths(task_cfg)
    for path in paths.values():
        first = _read_rows(path, limit=1)
        if not first or not any(cell.strip() for cell in first[0]):
            raise DataError(f"{path}: empty file (no {'header row' if task_cfg.tsv.header else 'rows'})")
        if task_cfg.tsv.header:
            header = first[0]
            absent = [c for c in task_cfg.tsv.columns.values() if c not in header]
            if absent:
                raise DataError(f"{path}: missing column(s) {absent}; header has {header}")
    return paths


def _rows(path: Path):
    """The file's rows, parsed one at a time (a limited read stops parsing at its limit)."""
    return csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)


def _read_rows(path: Path, limit: int | None = None) -> list[list[str]]:
    rows = []
    for row in _rows(path):
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _convert_label(value: str, regression: bool, names: list[str], where: str) -> int | float:
    value = value.strip()
    if regression:
        try:
            score = float(value)
        except ValueError:
            raise DataError(f"{where}: label {value!r} is not a number (a regression score)") from None
        if not math.isfinite(score):
            raise DataError(f"{where}: label {value!r} is not a finite number (regression scores must be)")
        return score
    try:
        if value in names:
            return names.index(value)
        label = int(value)
        if names and not 0 <= label < len(names):
            raise ValueError
        return label
    except ValueError:
        raise DataError(f"{where}: label {value!r} is not one of {names}") from None


def read_tsv(path: Path, task_cfg: Any, limit: int | None = None) -> dict[str, list]:
    """Read one official GLUE TSV into columns ``text_keys + [label]`` (short rows: see the module doc);
    ``limit``: stop after that many rows (``data.train_limit``: a subset of SST-2 need not convert 67k rows)."""
    rows = _rows(path)
    spec = dict(task_cfg.tsv.columns)
    if task_cfg.tsv.header:
        header = next(rows, [])
        index = {key: header.index(col) for key, col in spec.items()}
        first_line = 2
    else:
        index = {key: int(col) for key, col in spec.items()}
        first_line = 1
    needed = max(index.values())
    # Plain copies: reading a DictConfig attribute per row costs more than parsing the row (SST-2: 15x).
    text_keys, names = list(task_cfg.text_keys), list(task_cfg.label_names or [])
    regression = task_cfg.kind == "regression"
    skip_short = bool(task_cfg.tsv.get("skip_short_rows", False))
    columns: dict[str, list] = {key: [] for key in [*text_keys, "label"]}
    short: list[int] = []
    for line, row in enumerate(rows, start=first_line):
        if len(row) <= needed:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line (a trailing newline): no row at all
            if skip_short:
                short.append(line)
                continue
            missing = [f"{key} (column {spec[key]!r})" for key, i in index.items() if i >= len(row)]
            raise DataError(f"{path}:{line}: row has {len(row)} field(s), missing {', '.join(missing)}; "
                            f"a tab or a line break inside a field splits a row")
        for key in text_keys:
            columns[key].append(row[index[key]])
        columns["label"].append(_convert_label(row[index["label"]], regression, names, f"{path}:{line}"))
        if limit is not None and len(columns["label"]) >= limit:
            break
    report_skips(str(path), "too few fields (as in the official dump; the GLUE processors skip them)", short)
    if not columns["label"]:
        raise DataError(f"{path}: no usable rows (empty split)")
    return columns


def check_hub_label_order(feature: Any, task_cfg: Any) -> None:
    """The hub's ``ClassLabel`` ids must mean ``task.label_names`` in order (ids are used as they are)."""
    names = getattr(feature, "names", None)
    if task_cfg.kind != "regression" and names is not None and list(names) != list(task_cfg.label_names):
        raise DataError(f"task {task_cfg.name!r}: the hub's label order {list(names)} differs from "
                        f"task.label_names={list(task_cfg.label_names)}; fix task.label_names to match the hub")


def load_glue(task_cfg: Any, limits: dict[str, int | None] | None = None):
    """GLUE task as a ``DatasetDict``: local TSVs when ``task.data_dir`` is set, else the hub.
    ``limits``: split -> the number of leading rows to keep (local files are read no further)."""
    import datasets

    if not task_cfg.data_dir:
        raw = load_hub_dataset(task_cfg)
        check_hub_label_order(raw["train"].features.get("label"), task_cfg)
        keep = [*task_cfg.text_keys, "label"]
        return datasets.DatasetDict(
            {s: raw[s].select_columns(keep) for s in ["train", *task_cfg.eval_splits]}
        )
    label_type = datasets.Value("float32") if task_cfg.kind == "regression" else datasets.Value("int64")
    features = datasets.Features({**{k: datasets.Value("string") for k in task_cfg.text_keys}, "label": label_type})
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(read_tsv(path, task_cfg, (limits or {}).get(split)), features=features)
         for split, path in check_local_files(task_cfg).items()}
    )


def load_glue_test(task_cfg: Any, split: str):
    """A GLUE test split (no labels): local ``task.test.files[split]`` (header row; text columns
    ``task.test.columns``, id column ``task.test.index``) or the hub's split (id column ``idx``)."""
    import datasets

    test, keys = task_cfg.test, list(task_cfg.text_keys)
    if not task_cfg.data_dir:
        hub = dict((test.get("hub") or {}).get(split) or {})
        raw = load_hub_dataset(task_cfg, name=hub.get("name"), split=hub.get("split", split))
        columns = {key: list(raw[key]) for key in keys}
        columns["index"] = [str(i) for i in raw["idx"]]
    else:
        path = Path(task_cfg.data_dir).expanduser() / test.files[split]
        if not path.is_file():
            raise DataError(f"task {task_cfg.name!r}: missing test file {path} (task.test.files.{split})")
        rows = _read_rows(path)
        if not rows:
            raise DataError(f"{path}: empty file")
        header, rows = rows[0], rows[1:]
        wanted = {**{key: test.columns[key] for key in keys}, "index": test.index}
        absent = [c for c in wanted.values() if c not in header]
        if absent:
            raise DataError(f"{path}: missing column(s) {absent}; header has {header}")
        position = {key: header.index(col) for key, col in wanted.items()}
        columns = {key: [] for key in wanted}
        for line, row in enumerate(rows, start=2):
            if len(row) <= max(position.values()):
                raise DataError(f"{path}:{line}: {len(row)} fields, expected at least {max(position.values()) + 1}")
            for key, at in position.items():
                columns[key].append(row[at])
    if not columns["index"]:
        raise DataError(f"task {task_cfg.name!r}: test split {split!r} has no rows")
    columns["label"] = [-1.0 if task_cfg.kind == "regression" else -1] * len(columns["index"])
    return datasets.Dataset.from_dict(columns)
