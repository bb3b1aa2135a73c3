"""CLUE (Xu et al., 2020) and FewCLUE classification tasks: hub loader (``clue/clue``) and local JSON lines.

Local files (``task.data_dir``) are the official JSON-lines dumps, one object per line, UTF-8 with
an optional BOM; blank lines are skipped. For each split the loader looks for ``task.files[split]``
(the CLUE names: ``train.json``, ``dev.json``) and, when that file is absent, for
``task.fewclue_files[split]`` (the FewCLUE names: ``train_few_all.json``, ``dev_few_all.json``,
``test_public.json``). Any other file (a FewCLUE fold such as ``train_0.json``) is picked with
``task.files.train=train_0.json``; ``task.eval_splits=[validation,test]`` also evaluates on the
labelled FewCLUE ``test_public.json``.

Rows come out as ``task.text_keys`` (strings) + ``label`` (int, the index in ``task.label_names``),
built according to ``task.inputs``:

- ``plain``: each text key is the row field of that name (AFQMC, TNEWS, IFLYTEK, CMNLI, OCNLI).
- ``wsc_spans`` (CLUEWSC2020): one ``text`` where, using ``target.span{1,2}_index``, the candidate
  antecedent ``span1_text`` is wrapped in ``task.span_markers.span1`` (``[`` ``]``) and the pronoun
  ``span2_text`` in ``task.span_markers.span2`` (``<`` ``>``), e.g. ``就像一片[树叶]飘入了树林，<他>走到了``.
  When an index does not point at its span text, the occurrence of the span nearest to it is used.
- ``csl_keywords`` (CSL): the pair (``keywords``, ``abst``), the keyword list joined with
  ``task.keyword_sep`` (``，``).

Labels are matched as strings against ``task.label_names``, so TNEWS codes work both as CLUE's
strings (``"115"``) and FewCLUE's ints (``115``); rows whose label is in ``task.skip_labels``
(``"-"``, no annotator majority, in CMNLI/OCNLI) are dropped, counted and logged (``data_skipped``
in ``metrics.json``). Non-UTF-8 bytes fail naming the file and line. Hub labels are ``ClassLabel`` ints
whose name order can differ from ``task.label_names`` (``clue/clue`` orders NLI labels
neutral/entailment/contradiction and CLUEWSC true/false): they are mapped through the hub's names;
hub rows without a label (``-1``) are dropped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from regbench.data import DataError, read_text, report_skips
from regbench.data.hub import load_hub_dataset

DEFAULT_SPAN_MARKERS = {"span1": ["[", "]"], "span2": ["<", ">"]}
DEFAULT_KEYWORD_SEP = "，"
INPUTS = ("plain", "wsc_spans", "csl_keywords")


# -- task settings ------------------------------------------------------------------------------
def _inputs(task_cfg: Any) -> str:
    inputs = task_cfg.get("inputs") or "plain"
    if inputs not in INPUTS:
        raise DataError(f"task.inputs={inputs!r} is unknown for task {task_cfg.name!r}; valid: {list(INPUTS)}")
    return inputs


def _label_names(task_cfg: Any) -> list[str]:
    names = [str(n) for n in (task_cfg.get("label_names") or [])]
    if not names:
        raise DataError(f"task {task_cfg.name!r}: task.label_names is empty; a CLUE task needs its label names")
    return names


def _span_markers(task_cfg: Any) -> dict[str, tuple[str, str]]:
    given = dict(task_cfg.get("span_markers") or {})
    return {span: tuple(str(m) for m in given.get(span, default)) for span, default in DEFAULT_SPAN_MARKERS.items()}


# -- row construction (shared by local files and the hub) ---------------------------------------
def _text(row: dict, field: str, where: str) -> str:
    if field not in row:
        raise DataError(f"{where}: missing field {field!r} (the row has {sorted(row)})")
    value = row[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} is {type(value).__name__} {value!r}, expected text")
    return value


def _span_start(text: str, span: str, index: Any) -> int:
    """Start of ``span`` in ``text``: ``index`` when it points at the span, else the nearest occurrence."""
    if isinstance(index, int) and not isinstance(index, bool) and text[index:index + len(span)] == span:
        return index
    starts, at = [], text.find(span)
    while at != -1:
        starts.append(at)
        at = text.find(span, at + 1)
    if not starts:
        return -1
    ref = index if isinstance(index, int) and not isinstance(index, bool) else 0
    return min(starts, key=lambda s: abs(s - ref))


def mark_spans(text: str, target: dict, markers: dict[str, tuple[str, str]], where: str) -> str:
    """CLUEWSC input: ``text`` with span1 and span2 wrapped in their markers (see the module doc)."""
    inserts = []  # (position, order, mark): closing marks before opening ones at the same position
    for span in ("span1", "span2"):
        if f"{span}_text" not in target:
            raise DataError(f"{where}: target has no {span}_text (target has {sorted(target)})")
        span_text = target[f"{span}_text"]
        if not isinstance(span_text, str) or not span_text:
            raise DataError(f"{where}: target.{span}_text={span_text!r} is not a non-empty text")
        start = _span_start(text, span_text, target.get(f"{span}_index"))
        if start < 0:
            raise DataError(f"{where}: target.{span}_text={span_text!r} does not occur in the text")
        opening, closing = markers[span]
        inserts += [(start, 1, opening), (start + len(span_text), 0, closing)]
    out, last = [], 0
    for position, _, mark in sorted(inserts):
        out += [text[last:position], mark]
        last = position
    out.append(text[last:])
    return "".join(out)


def _csl_keywords(row: dict, sep: str, where: str) -> str:
    if "keyword" not in row:
        raise DataError(f"{where}: missing field 'keyword' (the row has {sorted(row)})")
    keywords = row["keyword"]
    if isinstance(keywords, str):
        return keywords
    if not isinstance(keywords, (list, tuple)) or not all(isinstance(k, str) for k in keywords):
        raise DataError(f"{where}: field 'keyword' is {keywords!r}, expected a list of texts")
    return sep.join(keywords)


def row_builder(task_cfg: Any) -> Callable[[dict, str], dict[str, str]]:
    """``fn(raw row, where) -> {text_key: text}`` for the task's ``task.inputs``."""
    inputs, keys = _inputs(task_cfg), list(task_cfg.text_keys)
    if inputs == "wsc_spans":
        if len(keys) != 1:
            raise DataError(f"task.inputs=wsc_spans builds one text; task.text_keys={keys} must have one key")
        markers = _span_markers(task_cfg)

        def build(row: dict, where: str) -> dict[str, str]:
            target = row.get("target")
            if not isinstance(target, dict):
                raise DataError(f"{where}: missing field 'target' (a dict with span1_text/span2_text/indices)")
            return {keys[0]: mark_spans(_text(row, "text", where), target, markers, where)}

    elif inputs == "csl_keywords":
        if len(keys) != 2:
            raise DataError(f"task.inputs=csl_keywords builds (keywords, abst); "
                            f"task.text_keys={keys} must have two keys")
        sep = str(task_cfg.get("keyword_sep") or DEFAULT_KEYWORD_SEP)

        def build(row: dict, where: str) -> dict[str, str]:
            return {keys[0]: _csl_keywords(row, sep, where), keys[1]: _text(row, "abst", where)}

    else:

        def build(row: dict, where: str) -> dict[str, str]:
            return {key: _text(row, key, where) for key in keys}

    return build


def _label_value(value: Any) -> str | None:
    """A label as its string form (``115`` and ``"115"`` alike); None when it is not a scalar."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip()


# -- local files --------------------------------------------------------------------------------
def split_files(task_cfg: Any) -> dict[str, Path]:
    """File of each needed split (train + eval splits): the CLUE name, else the FewCLUE name."""
    root = Path(task_cfg.data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"task.data_dir={str(root)!r} is not a directory")
    files = dict(task_cfg.get("files") or {})
    fewclue = dict(task_cfg.get("fewclue_files") or {})
    paths = {}
    for split in ["train", *task_cfg.eval_splits]:
        names = list(dict.fromkeys(n for n in (files.get(split), fewclue.get(split)) if n))
        if not names:
            raise DataError(f"task {task_cfg.name!r}: no file name for split {split!r}; set task.files.{split}=<file>")
        found = [root / n for n in names if (root / n).is_file()]
        if not found:
            raise DataError(
                f"task {task_cfg.name!r}: no {split!r} file in task.data_dir={str(root)!r}: "
                f"looked for {' or '.join(names)} (accepted names; pick another with task.files.{split}=<file>)"
            )
        paths[split] = found[0]
    return paths


def read_json_lines(path: Path, task_cfg: Any) -> dict[str, list]:
    """Read one CLUE JSON-lines file into columns ``text_keys + [label]``."""
    build = row_builder(task_cfg)
    names = _label_names(task_cfg)
    index = {name: i for i, name in enumerate(names)}
    skip = {str(s) for s in (task_cfg.get("skip_labels") or [])}
    columns: dict[str, list] = {key: [] for key in [*task_cfg.text_keys, "label"]}
    skipped: list[int] = []
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):  # a non-UTF-8 byte is named by line
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: malformed JSON line ({err.msg} at column {err.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "label" not in row:
            raise DataError(f"{where}: missing field 'label' (the row has {sorted(row)})")
        label = _label_value(row["label"])
        if label in skip:
            skipped.append(line_no)
            continue
        if label not in index:
            raise DataError(f"{where}: label {row['label']!r} is not one of {names}")
        for key, text in build(row, where).items():
            columns[key].append(text)
        columns["label"].append(index[label])
    report_skips(str(path), f"label in task.skip_labels={sorted(skip)} (no annotator majority)", skipped)
    if not columns["label"]:
        raise DataError(f"{path}: no usable rows (empty split)")
    return columns


# -- hub ----------------------------------------------------------------------------------------
def _hub_label_map(feature: Any, names: list[str], where: str) -> Callable[[Any], int | None]:
    """Hub label -> index in ``names`` (None: unlabelled row), through the ClassLabel names."""
    hub_names = [str(n) for n in getattr(feature, "names", None) or []]
    index = {name: i for i, name in enumerate(names)}
    if hub_names:
        unknown = [n for n in hub_names if n not in index]
        if unknown:
            raise DataError(f"{where}: hub label name(s) {unknown} are not in task.label_names={names}")
        table = [index[n] for n in hub_names]
        return lambda v: table[v] if isinstance(v, int) and 0 <= v < len(table) else None
    # not a ClassLabel: ints are already indices, strings are names
    return lambda v: (v if isinstance(v, int) and 0 <= v < len(names) else
                      index.get(str(v)) if isinstance(v, str) else None)


def convert_hub_split(ds: Any, task_cfg: Any, split: str, features: Any):
    """One hub split as ``text_keys + label`` rows, labels aligned with ``task.label_names``."""
    where = f"hub {task_cfg.hub.path}/{task_cfg.hub.get('name')} split {split!r}"
    if "label" not in ds.column_names:
        raise DataError(f"{where}: no 'label' column (columns: {ds.column_names})")
    build = row_builder(task_cfg)
    to_index = _hub_label_map(ds.features["label"], _label_names(task_cfg), where)
    keys = list(task_cfg.text_keys)

    def convert(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in [*keys, "label"]}
        columns = list(batch)
        for i, row_idx in enumerate(indices):
            row = {c: batch[c][i] for c in columns}
            label = to_index(row["label"])
            if label is None:
                continue
            for key, text in build(row, f"{where} row {row_idx}").items():
                out[key].append(text)
            out["label"].append(label)
        return out

    converted = ds.map(convert, batched=True, with_indices=True, remove_columns=ds.column_names,
                       features=features, desc=f"clue {task_cfg.name}/{split}")
    if converted.num_rows < ds.num_rows:
        report_skips(where, "no label (-1 on the hub)", count=ds.num_rows - converted.num_rows)
    if converted.num_rows == 0:
        raise DataError(f"{where}: no labelled rows (empty split)")
    return converted


# -- loader -------------------------------------------------------------------------------------
def load_clue(task_cfg: Any):
    """CLUE task as a ``DatasetDict``: local JSON lines when ``task.data_dir`` is set, else the hub."""
    import datasets

    features = datasets.Features({**{k: datasets.Value("string") for k in task_cfg.text_keys},
                                  "label": datasets.Value("int64")})
    splits = ["train", *task_cfg.eval_splits]
    if not task_cfg.data_dir:
        raw = load_hub_dataset(task_cfg)
        missing = [s for s in splits if s not in raw]
        if missing:
            raise DataError(f"hub {task_cfg.hub.path}/{task_cfg.hub.get('name')} has no split(s) {missing}; "
                            f"it has {list(raw)}")
        return datasets.DatasetDict({s: convert_hub_split(raw[s], task_cfg, s, features) for s in splits})
    paths = split_files(task_cfg)  # every file checked before any is read
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(read_json_lines(path, task_cfg), features=features)
         for split, path in paths.items()}
    )
