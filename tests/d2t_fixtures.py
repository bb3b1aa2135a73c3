"""Data-to-text fixtures in the official layouts (E2E CSV, WebNLG XML, DART JSON, Rotowire JSON)
and tiny seq2seq backbones (BART, T5) with character-level tokenizers, saved with save_pretrained."""

from __future__ import annotations

import csv
import json
import random
import string
from pathlib import Path

NAMES = ["The Eagle", "Alimentum", "Aromi", "Bibimbap House", "Blue Spice", "Cotto", "Fitzbillies", "Giraffe"]
FOODS = ["English", "French", "Italian", "Chinese", "Indian", "Japanese"]
AREAS = ["city centre", "riverside"]
CHARS = string.ascii_letters + string.digits + " []|;,.-'<>:"


def e2e_mrs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"name[{rng.choice(NAMES)}], food[{rng.choice(FOODS)}], area[{rng.choice(AREAS)}]" for _ in range(n)]


def e2e_references(mr: str, k: int) -> list[str]:
    """``k`` texts that verbalise an MR (deterministic templates, so a model can learn them)."""
    fields = dict(part.strip().rstrip("]").split("[") for part in mr.split(","))
    name, food, area = fields["name"], fields["food"], fields["area"]
    templates = [f"{name} serves {food} food in the {area}.", f"In the {area}, {name} serves {food} food.",
                 f"{name} is a {food} place in the {area}."]
    return templates[:k]


def write_e2e(root: Path, n_train: int = 24, n_dev: int = 6, n_test: int = 6) -> Path:
    """trainset.csv / devset.csv / testset_w_refs.csv with header ``mr,ref``, one row per reference."""
    root.mkdir(parents=True, exist_ok=True)
    sizes = {"trainset.csv": (n_train, 0), "devset.csv": (n_dev, 1), "testset_w_refs.csv": (n_test, 2)}
    for name, (n, seed) in sizes.items():
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["mr", "ref"])
            for i, mr in enumerate(e2e_mrs(n, seed)):
                for ref in e2e_references(mr, 1 + i % 3):
                    writer.writerow([mr, ref])
    return root


def webnlg_entry(eid: int, triples: list[str], texts: list[str], lex_in_text_tag: bool = True) -> str:
    mtriples = "".join(f"<mtriple>{t}</mtriple>" for t in triples)
    lexes = "".join(
        f'<lex comment="good" lid="Id{j}">' + (f"<text>{t}</text>" if lex_in_text_tag else t) + "</lex>"
        for j, t in enumerate(texts, 1))
    return (f'<entry category="Food" eid="Id{eid}" size="{len(triples)}"><originaltripleset><otriple>{triples[0]}'
            f"</otriple></originaltripleset><modifiedtripleset>{mtriples}</modifiedtripleset>{lexes}</entry>")


def write_webnlg_xml(path: Path, entries: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0" ?>\n<benchmark><entries>{"".join(entries)}</entries></benchmark>\n')
    return path


def write_dart(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path


def rotowire_game(home: str = "Raptors", vis: str = "Heat") -> dict:
    """One game in the harvardnlp/boxscore-data layout (columns as dicts from row index to value)."""
    players = [("Kyle Lowry", "Toronto", "36", "24"), ("DeMar DeRozan", "Toronto", "34", "31"),
               ("Goran Dragic", "Miami", "33", "18"), ("Bench Guy", "Miami", "N/A", "N/A")]
    box = {"PLAYER_NAME": {}, "TEAM_CITY": {}, "MIN": {}, "PTS": {}, "REB": {}, "AST": {}, "FGM": {}, "FGA": {}}
    for i, (name, city, minutes, pts) in enumerate(players):
        idx = str(i)
        box["PLAYER_NAME"][idx], box["TEAM_CITY"][idx], box["MIN"][idx], box["PTS"][idx] = name, city, minutes, pts
        box["REB"][idx], box["AST"][idx] = ("5", "7") if minutes != "N/A" else ("N/A", "N/A")
        box["FGM"][idx], box["FGA"][idx] = ("9", "17") if minutes != "N/A" else ("N/A", "N/A")
    line = lambda city, name, pts, w, l: {"TEAM-CITY": city, "TEAM-NAME": name, "TEAM-PTS": pts,  # noqa: E731
                                          "TEAM-WINS": w, "TEAM-LOSSES": l, "TEAM-PTS_QTR1": "25", "TEAM-AST": "22"}
    return {"home_name": home, "home_city": "Toronto", "vis_name": vis, "vis_city": "Miami", "day": "11_14_15",
            "home_line": line("Toronto", home, "96", "8", "3"), "vis_line": line("Miami", vis, "76", "5", "6"),
            "box_score": box, "summary": f"The {home} defeated the {vis} 96 - 76 on Saturday .".split()}


def save_tiny_bart(path: Path, seed: int = 0) -> Path:
    """A 2+2-layer, hidden-32 BART with a character-level byte-BPE tokenizer (no merges)."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in CHARS.replace(" ", "Ġ"):
        vocab.setdefault(ch, len(vocab))
    tokenizer = BartTokenizer(vocab=vocab, merges=[])
    config = BartConfig(vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=256, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2, forced_eos_token_id=2)
    torch.manual_seed(seed)
    BartForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_t5(path: Path, seed: int = 0) -> Path:
    """A 2+2-layer, hidden-32 T5 with a character-level Unigram tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)] + [(c, -2.0) for c in CHARS if c != " "]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_bert_for_bert2bert(path: Path) -> Path:
    """A tiny BERT encoder whose WordPiece vocabulary covers the E2E fixtures (warm-start source)."""
    from tests.fixtures import save_tiny_bert

    words = {w.lower().strip(".,[]") for mr in e2e_mrs(40) for w in mr.replace("[", " ").replace("]", " ").split()}
    words |= {"serves", "food", "in", "the", "is", "a", "place", "name", "area", ",", ".", "[", "]"}
    return save_tiny_bert(path, vocab=sorted(words), max_position_embeddings=128)
