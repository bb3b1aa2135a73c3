"""GLUE metric functions equal sklearn/scipy and hand-computed values on known inputs."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from regbench.metrics import compute


def metrics(*names):
    """task.metrics entries: dotted paths of the metric functions."""
    return [f"regbench.metrics.classification.{name}" for name in names]


PRED = [1, 0, 1, 1, 0, 1, 0, 0]
GOLD = [1, 0, 0, 1, 0, 1, 1, 0]


def test_accuracy_and_f1_match_hand_values_and_sklearn():
    out = compute(metrics("accuracy", "f1"), PRED, GOLD)
    assert out["accuracy"] == pytest.approx(6 / 8) == skm.accuracy_score(GOLD, PRED)
    # tp=3, fp=1, fn=1 -> precision 3/4, recall 3/4, F1 3/4
    assert out["f1"] == pytest.approx(0.75) == skm.f1_score(GOLD, PRED)


def test_matthews_corrcoef_matches_formula():
    tp, tn, fp, fn = 3, 3, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert compute(metrics("matthews_corrcoef"), PRED, GOLD)["matthews_corrcoef"] == pytest.approx(expected)
    assert compute(metrics("matthews_corrcoef"), [1] * 8, GOLD)["matthews_corrcoef"] == 0.0  # constant prediction


def test_pearson_and_spearman_match_scipy():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 50)
    pred = gold + rng.normal(0, 1, 50)
    out = compute(metrics("pearson", "spearmanr"), pred, gold)
    assert out["pearson"] == pytest.approx(stats.pearsonr(pred, gold)[0])
    assert out["spearmanr"] == pytest.approx(stats.spearmanr(pred, gold)[0])
    assert compute(metrics("pearson"), [1.0, 2.0, 3.0], [2.0, 4.0, 6.0])["pearson"] == pytest.approx(1.0)
    assert compute(metrics("spearmanr"), [1.0, 2.0, 3.0], [1.0, 10.0, 100.0])["spearmanr"] == pytest.approx(1.0)


def test_constant_regression_output_scores_zero_not_nan():
    assert compute(metrics("pearson", "spearmanr"), [2.0] * 4, [0.0, 1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearmanr": 0.0}


def test_unknown_metric_lists_valid_names():
    with pytest.raises(KeyError, match="unknown metric.*'accuracy'"):
        compute(metrics("bleu4"), [0], [0])
