"""Tiny models and data files in the official layouts, written by the tests (no network, no ../shared)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("good great fine bad awful poor the a movie film plot actor is was very not quite really "
         "man woman dog cat runs eats sleeps park house car red blue").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_bert(path: Path, *, vocab: list[str] | None = None, seed: int = 0, **config_overrides) -> Path:
    """A 2-layer, hidden-32 BERT with a WordPiece tokenizer, saved with ``save_pretrained``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = SPECIAL + list(vocab or WORDS)
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)
    settings = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    settings.update(config_overrides)
    torch.manual_seed(seed)
    BertModel(BertConfig(**settings)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _sentence(rng: random.Random, positive: bool | None = None) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
    if positive is not None:
        words.insert(rng.randrange(len(words) + 1), "great" if positive else "awful")
    return " ".join(words)


def _write_tsv(path: Path, rows: list[list], header: list[str] | None, bom: bool = False) -> None:
    # Written by hand: the official files are plain tab-joined lines with bare quotes.
    lines = ([header] if header else []) + rows
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        f.writelines("\t".join(map(str, row)) + "\n" for row in lines)


# task -> (header or None, row builder(rng, i, label) -> list, label values, files)
def _glue_rows(task: str, rng: random.Random, i: int, y: int):
    s1, s2 = _sentence(rng, bool(y)), _sentence(rng)
    if task == "cola":
        return ["src", str(y), "", s1 + (' "quoted' if i % 5 == 0 else "")]
    if task == "sst2":
        return [s1 + (' "bare quote' if i % 7 == 0 else ""), str(y)]
    if task == "mrpc":
        return [str(y), str(1000 + i), str(2000 + i), s1, s2]
    if task == "stsb":
        return [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1, s2,
                f"{(5.0 * y) if i % 3 else 2.5:.3f}"]
    if task == "qqp":
        return [str(i), str(2 * i), str(2 * i + 1), s1 + "?", s2 + "?", str(y)]
    if task == "mnli":
        label = ["entailment", "neutral", "contradiction"][i % 3]
        return [str(i), "0", "0", "fiction", "(x)", "(y)", "(x)", "(y)", s1, s2, label, label]
    if task in ("qnli", "rte"):
        return [str(i), s1, s2, ["entailment", "not_entailment"][y]]
    if task == "wnli":
        return [str(i), s1, s2, str(y)]
    raise KeyError(task)


GLUE_HEADERS = {
    "cola": None,
    "sst2": ["sentence", "label"],
    "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
    "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    "mnli": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"],
    "qnli": ["index", "question", "sentence", "label"],
    "rte": ["index", "sentence1", "sentence2", "label"],
    "wnli": ["index", "sentence1", "sentence2", "label"],
}
GLUE_TASKS = tuple(GLUE_HEADERS)


def write_glue_task(root: Path, task: str, n_train: int = 48, n_dev: int = 16, seed: int = 0) -> Path:
    """Write train/dev files of one GLUE task in its official TSV layout; returns the folder."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train.tsv": n_train}
    if task == "mnli":
        splits.update({"dev_matched.tsv": n_dev, "dev_mismatched.tsv": n_dev})
    else:
        splits["dev.tsv"] = n_dev
    for name, n in splits.items():
        rows = [_glue_rows(task, rng, i, i % 2) for i in range(n)]
        _write_tsv(root / name, rows, GLUE_HEADERS[task], bom=task == "mrpc")
    return root


# The official test files (no labels): header row, an id column, the text columns.
GLUE_TEST_HEADERS = {
    "cola": ["index", "sentence"],
    "sst2": ["index", "sentence"],
    "mrpc": ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"],
    "qqp": ["id", "question1", "question2"],
    "mnli": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"],
    "qnli": ["index", "question", "sentence"],
    "rte": ["index", "sentence1", "sentence2"],
    "wnli": ["index", "sentence1", "sentence2"],
}
TEXT_COLUMNS = {"sentence", "#1 String", "#2 String", "sentence1", "sentence2", "question1", "question2", "question"}


def write_glue_test(root: Path, task: str, n: int = 10, seed: int = 1) -> list[str]:
    """Write ``test.tsv`` (MNLI: ``test_matched.tsv``, ``test_mismatched.tsv`` and the diagnostic
    ``../diagnostic/diagnostic.tsv``) in the official layout; returns the ids of ``test.tsv``."""
    rng = random.Random(seed)
    header = GLUE_TEST_HEADERS[task]
    ids = [str(1000 + i) for i in range(n)]  # ids that are not row numbers
    rows = [[i if col in ("index", "id") else _sentence(rng) if col in TEXT_COLUMNS else "x" for col in header] for i in ids]
    names = ["test_matched.tsv", "test_mismatched.tsv"] if task == "mnli" else ["test.tsv"]
    for name in names:
        _write_tsv(root / name, rows, header)
    if task == "mnli":
        (root.parent / "diagnostic").mkdir(exist_ok=True)
        _write_tsv(root.parent / "diagnostic" / "diagnostic.tsv", [[i, _sentence(rng), _sentence(rng)] for i in ids],
                   ["index", "sentence1", "sentence2"])
    return ids
