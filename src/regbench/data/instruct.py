"""Instruction tuning (``task=instruct/alpaca``): Alpaca-layout training data and a 0-shot
multiple-choice evaluation on MMLU's official CSV files, both offline on local files.

Training data, Alpaca's JSON layout (Taori et al. 2023; Alpaca-clean, ``yahma/alpaca-cleaned``, has the
same): one JSON list of ``{"instruction", "input", "output"}`` objects (``input`` may be empty or
absent), from ``task.data_dir`` / ``task.files.train`` or from the hub (``task.hub``). Each example is
the Alpaca prompt (with or without its input block, the release's two templates) followed by the
output; the loss covers the output tokens only (:mod:`regbench.data.causal`).

Evaluation, MMLU (Hendrycks et al., ICLR 2021): the official ``data.tar`` layout, one CSV per subject
``<split>/<subject>_<split>.csv`` without a header, columns question, A, B, C, D, answer (a letter).
The folder is ``task.mmlu_dir`` or, when null, ``<task.data_dir>/<task.files.mmlu>``; ``task.mmlu.split``
picks test/val/dev and ``task.mmlu.subjects`` a subset (null: every subject found). Zero-shot prompt
as in the official evaluation script: ``The following are multiple choice questions (with answers)
about <subject>.`` + question + ``A. ..`` .. ``D. ..`` + ``Answer:``; each choice is scored by the
log-likelihood of its continuation (``task.mmlu.choices``: ``letters`` scores `` A`` .. `` D``,
``texts`` scores `` <choice text>``); ``task.mmlu.template: alpaca`` wraps that block in the Alpaca
prompt (instruction-tuned models), ``plain`` does not.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch

from regbench.data import DataError, read_text
from regbench.data.causal import IGNORE, CausalLMCollator, pad, prompt_and_response
from regbench.data.encoding import Encoding

# Alpaca's two prompt templates (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT).
ALPACA_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n"
                     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
LETTERS = ("A", "B", "C", "D")
CHOICE_MODES = ("letters", "texts")
TEMPLATES = ("plain", "alpaca")


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    """The Alpaca prompt of one example (the template with an input block when ``input`` is not empty)."""
    if input_text and input_text.strip():
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def read_alpaca(path: Path) -> list[dict[str, str]]:
    """Rows of an Alpaca JSON file; a row without a string ``instruction``/``output`` fails naming it."""
    try:
        rows = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); Alpaca's layout is one JSON list of "
                        f"{{instruction, input, output}} objects") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: the top level must be a JSON list of {{instruction, input, output}} objects, "
                        f"got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("instruction", "output")):
            raise DataError(f"{path}: row {i} must be an object with string 'instruction' and 'output' (and an "
                            f"optional string 'input'), got {str(row)[:120]!r}")
        input_text = row.get("input") or ""
        if not isinstance(input_text, str):
            raise DataError(f"{path}: row {i}: 'input' must be a string, got {type(input_text).__name__}")
        out.append({"instruction": row["instruction"], "input": input_text, "output": row["output"]})
    return out


def read_mmlu(folder: Path, split: str = "test", subjects: list[str] | None = None) -> list[dict[str, Any]]:
    """Questions of MMLU's official CSVs under ``folder`` (``<split>/<subject>_<split>.csv``, or the
    CSVs directly in ``folder``), sorted by subject, file order within a subject."""
    folder = Path(folder).expanduser()
    base = folder / split if (folder / split).is_dir() else folder
    files = sorted(base.glob(f"*_{split}.csv"))
    if not files:
        raise DataError(f"MMLU: no '*_{split}.csv' files in {str(folder)!r} or {str(folder / split)!r} (the official "
                        f"data.tar layout: data/{split}/<subject>_{split}.csv); set task.mmlu_dir")
    found = {f.name[: -len(f"_{split}.csv")]: f for f in files}
    if subjects is not None:
        unknown = sorted(set(subjects) - set(found))
        if unknown:
            raise DataError(f"task.mmlu.subjects: {unknown} not in {str(base)!r} (found: {sorted(found)})")
        found = {s: found[s] for s in sorted(subjects)}
    rows = []
    for subject, path in found.items():
        for line, fields in enumerate(csv.reader(io.StringIO(read_text(path))), 1):
            if len(fields) != 6 or fields[5].strip() not in LETTERS:
                raise DataError(f"{path}:{line}: expected 6 columns question,A,B,C,D,answer with answer in A-D, got "
                                f"{len(fields)} column(s) {fields[:1]!r}...")
            rows.append({"subject": subject, "question": fields[0], "choices": fields[1:5],
                         "answer": LETTERS.index(fields[5].strip())})
    return rows


def mmlu_folder(task_cfg: Any) -> Path:
    """``task.mmlu_dir``, else ``<task.data_dir>/<task.files.mmlu>``; fails naming both keys."""
    if task_cfg.get("mmlu_dir"):
        return Path(str(task_cfg.mmlu_dir)).expanduser()
    files = task_cfg.get("files") or {}
    if task_cfg.get("data_dir") and files.get("mmlu"):
        return Path(str(task_cfg.data_dir)).expanduser() / str(files["mmlu"])
    raise DataError("the MMLU evaluation reads local files: set task.mmlu_dir=<MMLU data folder> (the official "
                    "data.tar's data/, with test/<subject>_test.csv), or task.data_dir with an 'mmlu' folder in it")


def load_instruct(task_cfg: Any):
    """``DatasetDict``: ``train`` = Alpaca rows (local ``task.data_dir`` or the hub), one evaluation split
    per ``task.eval_splits`` = the MMLU questions (``subject, question, choices, answer``)."""
    import datasets

    if task_cfg.get("data_dir"):
        root = Path(str(task_cfg.data_dir)).expanduser()
        path = root / str(task_cfg.files.train)
        if not path.is_file():
            raise DataError(f"task {task_cfg.name!r}: missing data file {str(path)!r} in task.data_dir={str(root)!r} "
                            f"(set task.files.train=<name>)")
        train = datasets.Dataset.from_list(read_alpaca(path))
    else:
        from regbench.data.hub import load_hub_dataset

        raw = load_hub_dataset(task_cfg, split="train")
        train = raw.map(lambda r: {"input": r.get("input") or ""}).select_columns(["instruction", "input", "output"])
    mmlu = task_cfg.get("mmlu") or {}
    subjects = list(mmlu["subjects"]) if mmlu.get("subjects") else None
    questions = datasets.Dataset.from_list(read_mmlu(mmlu_folder(task_cfg), str(mmlu.get("split", "test")), subjects))
    return datasets.DatasetDict({"train": train, **{split: questions for split in task_cfg.eval_splits}})


def mmlu_prompt(subject: str, question: str, choices: list[str], template: str = "plain") -> str:
    """The zero-shot MMLU prompt (official evaluation script's format), ending in ``Answer:``."""
    topic = " ".join(subject.split("_"))
    block = f"The following are multiple choice questions (with answers) about {topic}.\n\n{question}"
    block += "".join(f"\n{letter}. {text}" for letter, text in zip(LETTERS, choices)) + "\nAnswer:"
    return alpaca_prompt(block) if template == "alpaca" else block


def choice_sequences(tokenizer: Any, prompt: str, continuations: list[str], max_length: int) -> tuple[list, list]:
    """Per continuation: ids = prompt + continuation, labels = -100 on the prompt. The prompt keeps its
    last tokens when it is too long (the question's end and ``Answer:`` are what the choice follows)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids, labels = [], []
    for text in continuations:
        cont = tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = max(max_length - len(cont), 1)
        head = prompt_ids[-keep:] if len(prompt_ids) > keep else prompt_ids
        ids.append(list(head) + list(cont))
        labels.append([IGNORE] * len(head) + list(cont))
    return ids, labels


class InstructionCollator(CausalLMCollator):
    """Training rows as :class:`CausalLMCollator`; evaluation rows (``choice_ids``) flattened to
    ``B x C`` right-padded sequences ``choice_input_ids``/``choice_attention_mask``/``choice_labels``,
    with ``answer`` and ``example_id`` tensors."""

    def __call__(self, rows: list[dict]) -> dict:
        if "choice_ids" not in rows[0]:
            return super().__call__(rows)
        seqs = [s for row in rows for s in row["choice_ids"]]
        return {"choice_input_ids": pad(seqs, self.pad_id), "choice_attention_mask": pad([[1] * len(s) for s in seqs], 0),
                "choice_labels": pad([s for row in rows for s in row["choice_labels"]], IGNORE),
                "answer": torch.tensor([row["answer"] for row in rows], dtype=torch.long),
                "example_id": torch.tensor([row["example_id"] for row in rows], dtype=torch.long)}


def instruction_encoding(tokenizer: Any, task_cfg: Any, max_length: int) -> Encoding:
    """Alpaca rows -> prompt + output (loss on the output, ``task.max_target_length`` tokens with eos,
    prompt up to ``max_length``); MMLU rows -> one sequence per choice (at most ``max_length`` tokens)."""
    mmlu = task_cfg.get("mmlu") or {}
    mode, template = str(mmlu.get("choices", "letters")), str(mmlu.get("template", "plain"))
    if mode not in CHOICE_MODES or template not in TEMPLATES:
        raise DataError(f"task.mmlu.choices={mode!r} / task.mmlu.template={template!r}: choose from "
                        f"{list(CHOICE_MODES)} / {list(TEMPLATES)}")
    target_length = int(task_cfg.get("max_target_length") or max_length)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        if "instruction" in batch:
            prompts = [alpaca_prompt(i, x) for i, x in zip(batch["instruction"], batch["input"])]
            out = prompt_and_response(tokenizer, prompts, batch["output"], max_length, target_length)
            out.pop("prompt_ids")
            return out
        out: dict[str, list] = {"choice_ids": [], "choice_labels": [], "answer": list(batch["answer"])}
        for subject, question, choices in zip(batch["subject"], batch["question"], batch["choices"]):
            texts = [f" {c}" for c in (LETTERS if mode == "letters" else choices)]
            ids, labels = choice_sequences(tokenizer, mmlu_prompt(subject, question, choices, template), texts,
                                           max_length)
            out["choice_ids"].append(ids)
            out["choice_labels"].append(labels)
        return out

    return Encoding(encode=encode, collate=InstructionCollator(tokenizer), keep_columns=("answer",),
                    version=f"instruct-1:{mode}:{template}")
