import numpy as np
import pytest

from fld_train import scoring


def _case():
    """Four samples, two classes. Sample 3 is labelled 0 but both signals say 1."""
    given = np.array([0, 0, 1, 0])
    model = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    knn = np.array([[1.0, 0.0], [0.9, 0.1], [0.2, 0.8], [0.0, 1.0]])
    return given, model, knn


def test_thresholds_are_per_class_mean_self_confidence():
    given, model, knn = _case()
    post = 0.5 * model + 0.5 * knn
    t = scoring.per_class_thresholds(post, given, np.ones(4, bool))
    np.testing.assert_allclose(t, [np.mean(post[[0, 1, 3], 0]), post[2, 1]])


def test_class_without_labelled_samples_is_never_confident():
    t = scoring.per_class_thresholds(np.full((2, 3), 1 / 3), np.array([0, 0]), np.ones(2, bool))
    assert np.isinf(t[1]) and np.isinf(t[2])


def test_flags_the_sample_both_signals_disagree_with():
    ev = scoring.evaluate(*_case(), action="flag")
    np.testing.assert_array_equal(ev.flagged, [False, False, False, True])
    assert ev.suggested_labels[3] == 1
    assert ev.scores[3] == ev.scores.max() and 0.0 <= ev.scores.min() and ev.scores.max() <= 1.0
    np.testing.assert_array_equal(ev.decisions, [scoring.KEEP] * 3 + [scoring.REVIEW])
    np.testing.assert_array_equal(ev.weights, 1.0)


def test_relabel_needs_model_and_neighbours_to_agree():
    given, model, knn = _case()
    ev = scoring.evaluate(given, model, knn, action="relabel")
    assert ev.decisions[3] == scoring.RELABEL
    model[3] = [0.6, 0.4]  # the model now prefers the given label, the neighbours do not
    ev = scoring.evaluate(given, model, knn, action="relabel", model_weight=0.2)
    assert ev.flagged[3] and ev.decisions[3] == scoring.REVIEW


def test_downweight_gives_one_minus_score():
    ev = scoring.evaluate(*_case(), action="downweight")
    assert ev.decisions[3] == scoring.DOWNWEIGHT
    np.testing.assert_allclose(ev.weights[3], 1 - ev.scores[3], rtol=1e-6)
    np.testing.assert_array_equal(ev.weights[:3], 1.0)


def test_unseen_samples_are_neither_flagged_nor_scored():
    given, model, knn = _case()
    seen = np.array([True, True, True, False])
    ev = scoring.evaluate(given, model, knn, seen=seen, action="relabel")
    assert not ev.flagged[3] and ev.scores[3] == 0.0 and ev.decisions[3] == scoring.UNSEEN


def test_bad_arguments_are_named():
    given, model, knn = _case()
    with pytest.raises(ValueError, match="`action` must be one of"):
        scoring.evaluate(given, model, knn, action="delete")
    with pytest.raises(ValueError, match="`model_weight` must be in \\[0.0, 1.0\\], got 2"):
        scoring.evaluate(given, model, knn, model_weight=2)
    with pytest.raises(ValueError, match="`neighbour_dist` must have shape \\(4, 2\\)"):
        scoring.evaluate(given, model, knn[:3])
    with pytest.raises(ValueError, match="outside \\[0, num_classes=2\\)"):
        scoring.evaluate(given + 2, model, knn)
