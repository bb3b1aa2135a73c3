"""Generation metrics: multi-reference corpus BLEU (sacrebleu) and ROUGE-L (rouge-score)."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from regbench.metrics import compute


def metrics(*names):
    """task.metrics entries: dotted paths of the metric functions."""
    return [f"regbench.metrics.generation.{name}" for name in names]


PREDICTIONS = ["the cat sat on the mat", "a dog runs"]
REFERENCES = [["the cat sat on a mat", "a cat sat on the mat"], ["a dog runs"]]


def test_multi_reference_bleu_matches_a_hand_computed_value_and_sacrebleu():
    # Clipped n-gram matches over both sentences: 1-grams 8/9 ("the" appears twice, once per ref),
    # 2/3/4-grams all match some reference; lengths equal the closest references, so BP = 1.
    by_hand = 100 * (8 / 9) ** 0.25
    streams = [["the cat sat on a mat", "a dog runs"], ["a cat sat on the mat", None]]
    assert compute(metrics("bleu"), PREDICTIONS, REFERENCES)["bleu"] == pytest.approx(by_hand, abs=1e-6)
    assert compute(metrics("bleu"), PREDICTIONS, REFERENCES)["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(PREDICTIONS, streams).score, abs=1e-9)


def test_bleu_uses_every_reference_not_only_the_first():
    single = compute(metrics("bleu"), PREDICTIONS, [[refs[0]] for refs in REFERENCES])["bleu"]
    assert single < compute(metrics("bleu"), PREDICTIONS, REFERENCES)["bleu"]


def test_rouge_l_takes_the_best_reference_per_prediction():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = 100 * sum(max(scorer.score(r, p)["rougeL"].fmeasure for r in refs)
                         for p, refs in zip(PREDICTIONS, REFERENCES)) / 2
    assert compute(metrics("rouge_l"), PREDICTIONS, REFERENCES)["rouge_l"] == pytest.approx(expected)
    assert compute(metrics("rouge_l"), ["a dog runs"], [["nothing alike", "a dog runs"]])["rouge_l"] == pytest.approx(100.0)


def test_a_prediction_without_references_is_refused():
    with pytest.raises(ValueError, match="at least one reference"):
        compute(metrics("bleu"), ["x"], [[]])
