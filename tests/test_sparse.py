import numpy as np
import pytest

from fld_train import scoring
from fld_train.sparse import Segments, SparseProbs


def test_from_dense_keeps_the_largest_entries_and_round_trips():
    dense = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    top = SparseProbs.from_dense(dense, top_k=2)
    np.testing.assert_allclose(top.to_dense(3), [[0, 0.6, 0.3], [0.5, 0, 0.3]])
    np.testing.assert_allclose(SparseProbs.from_dense(dense).to_dense(3), dense)


def test_to_dense_sums_repeated_classes_and_ignores_empty_slots():
    sp = SparseProbs(np.array([[2, 2, -1], [0, 1, 0]]), np.array([[0.25, 0.5, 0.0], [0.1, 0.2, 0.3]]))
    np.testing.assert_allclose(sp.to_dense(3), [[0, 0, 0.75], [0.4, 0.2, 0]])


def test_check_names_the_argument_and_the_bad_class():
    sp = SparseProbs(np.array([[0, 7]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="`model_probs` holds class 7.*num_classes=3"):
        sp.check("model_probs", 1, 3)
    with pytest.raises(ValueError, match="`model_probs` has 1 rows, expected 2"):
        sp.check("model_probs", 2, 8)
    with pytest.raises(ValueError, match="one shape"):
        SparseProbs(np.zeros((2, 3), int), np.zeros((2, 2)))


def test_segments_merge_per_row_and_reduce_like_dense_arrays():
    rng = np.random.default_rng(0)
    n, m, c = 200, 7, 5
    classes = rng.integers(-1, c, size=(n, m))
    classes[:, 0] = rng.integers(0, c, size=n)  # one valid class per row
    vals = np.where(classes >= 0, rng.random((n, m)), 0.0)
    seg = Segments.merge(classes, vals[None])
    dense = SparseProbs(classes, vals).to_dense(c)
    present = SparseProbs(classes, (classes >= 0).astype(float)).to_dense(c) > 0
    masked = np.where(present, dense, -np.inf)
    np.testing.assert_allclose(seg.row_max(seg.values[0]), masked.max(axis=1))
    np.testing.assert_array_equal(seg.row_argmax(seg.values[0]), masked.argmax(axis=1))
    target = rng.integers(0, c, size=n)
    np.testing.assert_allclose(seg.at(seg.values[0], target), dense[np.arange(n), target])
    assert np.all(np.diff(seg.rows) >= 0)


def test_argmax_ties_go_to_the_smallest_class():
    seg = Segments.merge(np.array([[3, 1, 2]]), np.array([[[0.4, 0.4, 0.2]]]))
    assert seg.row_argmax(seg.values[0])[0] == 1


def _reference(given, model, knn, w=0.5):
    """The scoring rule written out densely: the specification the sparse implementation must meet."""
    n = given.size
    q = w * model + (1 - w) * knn
    q_given = q[np.arange(n), given]
    other = q.copy()
    other[np.arange(n), given] = -np.inf
    score = (other.max(axis=1) - q_given + 1) / 2
    suggested = q.argmax(axis=1)
    flagged = (suggested != given) & (q[np.arange(n), suggested] > q_given)
    return score, suggested, flagged


@pytest.mark.parametrize("action", ["flag", "relabel"])
def test_sparse_inputs_score_exactly_like_dense_ones(action):
    rng = np.random.default_rng(1)
    n, c, k = 500, 6, 5
    model = rng.dirichlet(np.ones(c) * 0.5, size=n)
    given = rng.integers(0, c, size=n)
    nb_labels = np.where(rng.random((n, k)) < 0.7, given[:, None], rng.integers(0, c, size=(n, k)))
    knn = SparseProbs(nb_labels, np.full((n, k), 1 / k))
    dense = scoring.evaluate(given, model, knn.to_dense(c), action=action)
    sparse = scoring.evaluate(given, SparseProbs.from_dense(model), knn, num_classes=c, action=action)
    score, suggested, flagged = _reference(given, model, knn.to_dense(c))
    for ev in (dense, sparse):
        np.testing.assert_allclose(ev.scores, score, atol=1e-12)
        np.testing.assert_array_equal(ev.suggested_labels, suggested)
        np.testing.assert_array_equal(ev.flagged, flagged)
    np.testing.assert_array_equal(dense.decisions, sparse.decisions)


def test_top_k_model_probs_score_like_the_truncated_dense_ones():
    rng = np.random.default_rng(2)
    n, c = 300, 40
    model = rng.dirichlet(np.ones(c) * 0.1, size=n)
    given = rng.integers(0, c, size=n)
    top = SparseProbs.from_dense(model, top_k=5)
    knn = SparseProbs(rng.integers(0, c, size=(n, 10)), np.full((n, 10), 0.1))
    ev = scoring.evaluate(given, top, knn, num_classes=c, max_flag_class_fraction=1.0)  # the rule, uncapped
    score, suggested, flagged = _reference(given, top.to_dense(c), knn.to_dense(c))
    np.testing.assert_allclose(ev.scores, score, atol=1e-12)
    np.testing.assert_array_equal(ev.suggested_labels, suggested)
    np.testing.assert_array_equal(ev.flagged, flagged)


def test_sparse_inputs_need_num_classes():
    sp = SparseProbs(np.array([[0]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="`num_classes` is required"):
        scoring.evaluate(np.array([0]), sp, sp)


def test_average_of_two_distributions_equals_the_dense_mean():
    a = SparseProbs(np.array([[0, 2], [1, -1]]), np.array([[0.6, 0.4], [1.0, 0.0]]))
    b = SparseProbs(np.array([[2, -1], [1, 0]]), np.array([[1.0, 0.0], [0.5, 0.5]]))
    np.testing.assert_allclose(a.average(b).to_dense(3), 0.5 * a.to_dense(3) + 0.5 * b.to_dense(3))
    np.testing.assert_allclose(a.average(b, 0.8).to_dense(3), 0.8 * a.to_dense(3) + 0.2 * b.to_dense(3))
    np.testing.assert_allclose(a.average(b, 1.0).to_dense(3), a.to_dense(3))
    with pytest.raises(ValueError, match=r"`weight` must be in \[0.0, 1.0\], got 1.2"):
        a.average(b, 1.2)
