"""Data-to-text tasks: E2E, WebNLG, DART and Rotowire, from the hub or the official local layouts.

Every format is parsed into examples ``(source, references)``: ``source`` is the linearized input
(a meaning representation, triples or a box score), ``references`` every human text written for
it. The datamodule then sees, per split:

- ``train``: one row per (source, reference) pair (``source``, ``target``), as is usual for
  teacher-forced training on multi-reference data;
- evaluation splits: one row per distinct source (``source``, ``target`` = first reference,
  ``references``), so BLEU is multi-reference as in the official scorers.

Local files (``task.data_dir`` + ``task.files``):

==========  ====================================  ===========================================
task        layout                                files (defaults in conf/task/d2t/)
==========  ====================================  ===========================================
E2E         CSV with header ``mr,ref``            trainset.csv, devset.csv, testset_w_refs.csv
            (references grouped by MR)
WebNLG      official XML, one file per triple     train/, dev/, test/ (``<n>triples/*.xml``,
            count and category                    searched recursively; a single .xml works too)
DART        JSON list of ``{tripleset,            dart-v1.1.1-full-{train,dev,test}.json
            annotations: [{source, text}]}``
Rotowire    box-score JSON (Wiseman et al. 2017)  train.json, valid.json, test.json
==========  ====================================  ===========================================

Linearizations: E2E keeps the MR string (``name[The Eagle], eatType[pub]``); WebNLG/DART triples
become ``subject | predicate | object`` joined by `` ; `` (WebNLG underscores become spaces);
Rotowire is described in :mod:`regbench.data.rotowire`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterable

from regbench.data import DataError, local_split_paths, read_text
from regbench.data.hub import load_hub_dataset
from regbench.data.rotowire import linearize_game

csv.field_size_limit(sys.maxsize)

Example = tuple[str, list[str]]


# -- linearization ---------------------------------------------------------------------------------
def linearize_triples(triples: Iterable[Iterable[str]], underscores: bool = False) -> str:
    """``s | p | o ; s | p | o``; WebNLG's DBpedia names get their underscores turned into spaces."""
    parts = []
    for triple in triples:
        items = [str(x).strip() for x in triple]
        if underscores:
            items = [x.replace("_", " ") for x in items]
        parts.append(" | ".join(items))
    return " ; ".join(parts)


def group_references(pairs: Iterable[tuple[str, str]]) -> list[Example]:
    """Group (source, reference) pairs by source, keeping first-seen order (E2E lists one row per text)."""
    groups: dict[str, list[str]] = {}
    for source, reference in pairs:
        groups.setdefault(source, []).append(reference)
    return list(groups.items())


# -- local files -----------------------------------------------------------------------------------
def parse_e2e_csv(path: Path) -> list[Example]:
    """E2E NLG challenge CSV (Novikova et al. 2017): header ``mr,ref``, one row per reference.

    Every official row is one line: a row spanning several lines (an unclosed quote swallows the
    line break and the next rows, merging references) or with extra fields fails naming the line.
    """
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [c for c in ("mr", "ref") if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; header has {reader.fieldnames} "
                        f"(E2E files are CSV with header mr,ref; the reference-less testset.csv cannot be scored)")
    pairs = []
    line = reader.line_num  # the header's last line
    for row in reader:
        first, line = line + 1, reader.line_num
        if line > first:
            field = "ref" if "\n" in (row.get("ref") or "") else "mr"
            raise DataError(f"{path}:{first}: the row runs over lines {first}-{line} (field {field!r} holds a line "
                            f"break: an unclosed quote?); E2E rows are one line each")
        if None in row:
            raise DataError(f"{path}:{first}: {len(reader.fieldnames or []) + len(row[None])} fields, expected 2 "
                            f"(mr,ref): quote fields that contain commas")
        mr, ref = (row.get("mr") or "").strip(), (row.get("ref") or "").strip()
        if not mr or not ref:
            raise DataError(f"{path}:{first}: empty {'mr' if not mr else 'ref'} field")
        pairs.append((mr, ref))
    return group_references(pairs)


def _webnlg_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(path.rglob("*.xml"))


def parse_webnlg_xml(path: Path) -> list[Example]:
    """WebNLG XML (Gardent et al. 2017): ``entry/modifiedtripleset/mtriple`` and ``lex`` texts.

    ``path`` is one XML file or a folder searched recursively (the official ``<n>triples/`` tree).
    Handles both lex layouts: text directly in ``<lex>`` (2017 challenge) or in ``<lex><text>`` (v1.4+).
    """
    files = _webnlg_files(path)
    if not files:
        raise DataError(f"{path}: no WebNLG .xml files found (expected <n>triples/<Category>.xml)")
    examples = []
    for file in files:
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as err:
            line, column = err.position
            raise DataError(f"{file}:{line}: malformed XML (column {column}): {err}") from None
        for entry in root.iter("entry"):
            eid = entry.get("eid", "?")
            triples = [t.text.split("|") for t in entry.iter("mtriple") if t.text and t.text.strip()]
            texts = []
            for lex in entry.iter("lex"):
                text = lex.findtext("text") if lex.find("text") is not None else lex.text
                if text and text.strip():
                    texts.append(" ".join(text.split()))
            if not triples or not texts:
                what = "no <mtriple>" if not triples else "no <lex> text"
                raise DataError(f"{file}: entry eid={eid!r} has {what}")
            examples.append((linearize_triples(triples, underscores=True), texts))
    return examples


def _json_rows(path: Path, what: str, parse_row: Callable[[Any], list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """(source, reference) pairs of a JSON list file; a malformed file or row names the file and position."""
    try:
        rows = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON (column {err.colno}): {err.msg}") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of {what}s, got {type(rows).__name__}")
    pairs = []
    for i, row in enumerate(rows):
        try:
            pairs += parse_row(row)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"{path}: {what} {i}: malformed row ({type(err).__name__}: {err})") from None
    return pairs


def _dart_pairs(row: dict) -> list[tuple[str, str]]:
    triples = row["tripleset"]
    texts = [" ".join(a["text"].split()) for a in row["annotations"] if a.get("text", "").strip()]
    if not triples or any(len(t) != 3 for t in triples):
        raise ValueError("tripleset must be a non-empty list of [subject, predicate, object]")
    if not texts:
        raise ValueError("no annotation text")
    return [(linearize_triples(triples), text) for text in texts]


def _rotowire_pairs(game: dict) -> list[tuple[str, str]]:
    summary = game["summary"]
    text = " ".join(summary if isinstance(summary, list) else str(summary).split())
    if not text:
        raise ValueError("empty summary")
    return [(linearize_game(game), text)]


def parse_dart_json(path: Path) -> list[Example]:
    """DART JSON (Nan et al. 2021): a list of ``{"tripleset": [[s, p, o], ...], "annotations": [{"text"}]}``."""
    return group_references(_json_rows(path, "entry", _dart_pairs))  # DART repeats some triple sets


def parse_rotowire_json(path: Path) -> list[Example]:
    """Rotowire (Wiseman et al. 2017) box-score JSON: a list of games, each with one summary."""
    return [(source, [text]) for source, text in _json_rows(path, "game", _rotowire_pairs)]


# -- hub rows --------------------------------------------------------------------------------------
def e2e_hub_examples(rows: Any) -> list[Example]:
    """``tuetschek/e2e_nlg``: ``meaning_representation``, ``human_reference`` (one row per reference)."""
    return group_references(zip(rows["meaning_representation"], rows["human_reference"]))


def webnlg_hub_examples(rows: Any) -> list[Example]:
    """``webnlg-challenge/web_nlg``: ``modified_triple_sets.mtriple_set`` and ``lex.text``."""
    examples = []
    for triple_sets, lex in zip(rows["modified_triple_sets"], rows["lex"]):
        triples = [t.split("|") for t in triple_sets["mtriple_set"][0]]
        examples.append((linearize_triples(triples, underscores=True), [" ".join(t.split()) for t in lex["text"]]))
    return examples


def dart_hub_examples(rows: Any) -> list[Example]:
    """``Yale-LILY/dart``: ``tripleset`` and ``annotations.text``."""
    pairs = ((linearize_triples(t), text) for t, a in zip(rows["tripleset"], rows["annotations"]) for text in a["text"])
    return group_references(pairs)


FORMATS: dict[str, tuple[Callable[[Path], list[Example]], Callable[[Any], list[Example]] | None]] = {
    "e2e": (parse_e2e_csv, e2e_hub_examples),
    "webnlg": (parse_webnlg_xml, webnlg_hub_examples),
    "dart": (parse_dart_json, dart_hub_examples),
    "rotowire": (parse_rotowire_json, None),
}


# -- datasets --------------------------------------------------------------------------------------
def to_split(examples: list[Example], train: bool, where: str):
    """A ``datasets.Dataset`` of pairs (train) or of reference groups (evaluation)."""
    import datasets

    if not examples:
        raise DataError(f"{where}: no examples (empty split)")
    if train:
        pairs = [(s, r) for s, refs in examples for r in refs]
        return datasets.Dataset.from_dict({"source": [s for s, _ in pairs], "target": [r for _, r in pairs]})
    return datasets.Dataset.from_dict({
        "source": [s for s, _ in examples], "target": [refs[0] for _, refs in examples],
        "references": [refs for _, refs in examples],
    })


def load_d2t(task_cfg: Any, fmt: str):
    """A data-to-text task in format ``fmt`` (a key of :data:`FORMATS`) as a ``DatasetDict``: local files
    when ``task.data_dir`` is set, else the hub. Task configs select it as
    ``loader: {_target_: regbench.data.d2t.load_d2t, _partial_: true, fmt: <format>}``."""
    import datasets

    if fmt not in FORMATS:
        raise DataError(f"task.loader.fmt={fmt!r} is not a data-to-text format; valid: {sorted(FORMATS)}")
    parse, hub_examples = FORMATS[fmt]
    if task_cfg.data_dir:
        examples = {split: (parse(path), str(path)) for split, path in local_split_paths(task_cfg, folders=True).items()}
    else:
        if hub_examples is None or not task_cfg.get("hub"):
            raise DataError(f"task {task_cfg.name!r} has no hub copy that regbench can read; point task.data_dir at "
                            f"a folder with the official files ({', '.join(dict(task_cfg.files).values())})")
        raw = load_hub_dataset(task_cfg)
        hub_splits = dict(task_cfg.hub.get("splits") or {})
        examples = {}
        for split in ["train", *task_cfg.eval_splits]:
            name = hub_splits.get(split, split)
            examples[split] = (hub_examples(raw[name]), f"{task_cfg.hub.path} split {name!r}")
    return datasets.DatasetDict(
        {split: to_split(ex, train=split == "train", where=where) for split, (ex, where) in examples.items()})

