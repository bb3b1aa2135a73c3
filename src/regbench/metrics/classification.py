"""GLUE/CLUE metrics with the official formulas (Wang et al. 2019, GLUE §3; CLUE uses accuracy).

Classification metrics take predicted and gold class ids; F1 is binary with the positive class 1
(MRPC "equivalent", QQP "duplicate"). STS-B metrics take real-valued predictions and gold scores.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def accuracy(predictions, labels) -> float:
    """Fraction of exact matches."""
    return float(skm.accuracy_score(labels, predictions))


def f1(predictions, labels) -> float:
    """Binary F1 of the positive class (label 1)."""
    return float(skm.f1_score(labels, predictions, average="binary", pos_label=1, zero_division=0.0))


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation coefficient (CoLA); 0 when a side is constant."""
    return float(skm.matthews_corrcoef(labels, predictions))


def _constant(x) -> bool:
    return np.ptp(np.asarray(x, dtype=float)) == 0


def pearson(predictions, labels) -> float:
    """Pearson correlation (STS-B); 0 for constant predictions, where it is undefined."""
    if _constant(predictions) or _constant(labels):
        return 0.0
    return float(stats.pearsonr(predictions, labels)[0])


def spearmanr(predictions, labels) -> float:
    """Spearman rank correlation (STS-B); 0 for constant predictions."""
    if _constant(predictions) or _constant(labels):
        return 0.0
    return float(stats.spearmanr(predictions, labels)[0])
