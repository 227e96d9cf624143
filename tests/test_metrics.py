import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fld_train.metrics import auroc, correction_accuracy, detection_metrics, precision_recall_f1


def test_precision_recall_f1_by_hand():
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 1, 0, 0], bool)
    p, r, f1 = precision_recall_f1(pred, truth)
    assert (p, r) == (2 / 3, 2 / 3) and f1 == pytest.approx(2 / 3)


def test_empty_prediction_and_empty_truth():
    assert precision_recall_f1(np.zeros(3, bool), np.zeros(3, bool)) == (1.0, 1.0, 1.0)
    assert precision_recall_f1(np.zeros(3, bool), np.array([1, 0, 0], bool))[1] == 0.0


def test_auroc_matches_sklearn_with_ties(rng):
    truth = rng.random(500) < 0.3
    scores = np.round(rng.random(500) + truth * 0.3, 1)  # many ties
    assert auroc(scores, truth) == pytest.approx(roc_auc_score(truth, scores))


def test_auroc_is_nan_for_one_class():
    assert np.isnan(auroc(np.arange(3.0), np.zeros(3, bool)))


def test_detection_metrics_and_shape_errors():
    m = detection_metrics(np.array([1, 0], bool), np.array([0.9, 0.1]), np.array([1, 0], bool))
    assert (m.precision, m.recall, m.f1, m.auroc, m.flagged, m.noisy) == (1.0, 1.0, 1.0, 1.0, 1, 1)
    with pytest.raises(ValueError, match="`flagged` must be a 1-D array of length 2"):
        precision_recall_f1(np.zeros(3, bool), np.zeros(2, bool))


def test_correction_accuracy():
    changed = np.array([1, 1, 0], bool)
    assert correction_accuracy(changed, np.array([1, 2, 0]), np.array([1, 0, 5])) == 0.5
    assert np.isnan(correction_accuracy(np.zeros(3, bool), np.zeros(3), np.zeros(3)))
