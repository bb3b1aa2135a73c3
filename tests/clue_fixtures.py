"""CLUE / FewCLUE files in the official JSON-lines layout, written by the tests (no network, no ../shared)."""

from __future__ import annotations

import json
import random
from pathlib import Path

# Characters of the fixture texts; also the vocabulary of the tiny Chinese BERT.
CHARS = list("我你他她它的是不了在有人这中大为上个国和地到以说时要就出会可也对生能而子那得于着下自之年"
             "过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心")
NOUNS = ["树叶", "毛豆", "旧楼", "老师", "小狗"]
PRONOUNS = ["他", "它", "她"]
MARKS = list("[]<>，")  # span markers and the CSL keyword separator
VOCAB = CHARS + MARKS

TNEWS_CODES = [100, 101, 102, 103, 104, 106, 107, 108, 109, 110, 112, 113, 114, 115, 116]
NLI_LABELS = ["entailment", "neutral", "contradiction"]
CLUE_TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl")
CLUE_FILES = {"train": "train.json", "validation": "dev.json"}
FEWCLUE_FILES = {"train": "train_few_all.json", "validation": "dev_few_all.json", "test": "test_public.json"}


def sentence(rng: random.Random, lo: int = 4, hi: int = 12) -> str:
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(lo, hi)))


def wsc_row(rng: random.Random, i: int, label: str) -> dict:
    """A CLUEWSC row: ``prefix span1 middle span2 suffix`` with the official target dict."""
    noun, pronoun = NOUNS[i % len(NOUNS)], PRONOUNS[i % len(PRONOUNS)]
    prefix, middle, suffix = sentence(rng, 1, 5), sentence(rng, 2, 6), sentence(rng, 1, 5)
    text = prefix + noun + middle + pronoun + suffix
    target = {"span2_index": len(prefix + noun + middle), "span1_index": len(prefix),
              "span1_text": noun, "span2_text": pronoun}
    return {"target": target, "idx": i, "label": label, "text": text}


def clue_row(task: str, rng: random.Random, i: int, *, fewclue: bool = False) -> dict:
    """Row ``i`` of ``task`` as in the official files (FewCLUE: int TNEWS/IFLYTEK codes, extra ids)."""
    if task == "afqmc":
        return {"sentence1": sentence(rng), "sentence2": sentence(rng), "label": str(i % 2)}
    if task == "tnews":
        code = TNEWS_CODES[i % len(TNEWS_CODES)]
        row = {"label": code if fewclue else str(code), "label_desc": f"news_{code}", "sentence": sentence(rng),
               "keywords": ",".join(sentence(rng, 2, 3) for _ in range(2))}
        return {**row, "id": i} if fewclue else row
    if task == "iflytek":
        code = (7 * i) % 119
        row = {"label": code if fewclue else str(code), "label_des": f"类{code}", "sentence": sentence(rng, 10, 30)}
        return {**row, "id": i} if fewclue else row
    if task in ("cmnli", "ocnli"):
        label = NLI_LABELS[i % 3]
        row = {"sentence1": sentence(rng), "sentence2": sentence(rng), "label": label}
        if task == "ocnli":
            votes = {f"label{k}": (label if fewclue else None) for k in range(5)}
            row = {"level": "easy", **row, **votes, "genre": "news", "prem_id": f"news_{i}", "id": i}
        return row
    if task == "cluewsc2020":
        return wsc_row(rng, i, ["false", "true"][i % 2])
    if task == "csl":
        return {"id": i, "abst": sentence(rng, 20, 40), "keyword": [sentence(rng, 2, 4) for _ in range(1 + i % 3)],
                "label": str(i % 2)}
    raise KeyError(task)


def write_json_lines(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def write_clue_task(root: Path, task: str, n_train: int = 48, n_dev: int = 16, *, fewclue: bool = False,
                    unlabelled_every: int = 5, seed: int = 0) -> Path:
    """Write the train/dev (FewCLUE: train/dev/test) files of one CLUE task; returns the folder.

    CMNLI/OCNLI files also get one ``"label": "-"`` row every ``unlabelled_every`` rows (after the
    first), on top of the ``n_*`` labelled ones, as in the official dumps.
    """
    rng = random.Random(seed)
    names = FEWCLUE_FILES if fewclue else CLUE_FILES
    sizes = {"train": n_train, "validation": n_dev, "test": n_dev}
    for split, name in names.items():
        rows = [clue_row(task, rng, i, fewclue=fewclue) for i in range(sizes[split])]
        if task in ("cmnli", "ocnli") and unlabelled_every:
            for at in range(len(rows) - 1, 0, -unlabelled_every):
                rows.insert(at, {**clue_row(task, rng, at, fewclue=fewclue), "label": "-"})
        write_json_lines(root / name, rows)
    return root


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
