"""Generation metrics for data-to-text: corpus BLEU (sacrebleu) and ROUGE-L (rouge-score).

Predictions are strings; labels are the reference groups (a list of reference strings per
prediction), so multi-reference sets (E2E, WebNLG test) are scored as the official scripts do.
Both are reported on a 0-100 scale.
"""

from __future__ import annotations

from typing import Sequence


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Transpose per-prediction reference groups into sacrebleu's reference streams.

    Groups of different sizes are padded with ``None``, which sacrebleu skips, so each prediction
    is scored against exactly its own references.
    """
    groups = [list(g) for g in references]
    if any(not g for g in groups):
        raise ValueError("every prediction needs at least one reference")
    width = max(len(g) for g in groups)
    return [[g[i] if i < len(g) else None for g in groups] for i in range(width)]


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002) with sacrebleu's default 13a tokenization, multi-reference."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), _reference_streams(references)).score)


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L F1 (Lin 2004), best reference per prediction, as ``rouge_score.score_multi`` does."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score_multi(list(refs), pred)["rougeL"].fmeasure for pred, refs in zip(predictions, references)]
    return 100.0 * sum(scores) / len(scores) if scores else 0.0
