"""Confident learning's estimates: thresholds, confident classes, the calibrated joint, the noise model."""

from __future__ import annotations

import numpy as np
import pytest

from fld_train.confident import (
    chance_flip_concentration,
    confident_labels,
    estimate_joint,
    flip_concentration,
    wrong_label_probability,
)
from fld_train.metrics import auroc
from fld_train.sparse import SparseProbs


def _pair_flips(seed: int = 0):
    """600 samples of 3 classes, the posterior 0.8 on the true class; 30% of class 0 labelled 1."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(3), 200)
    q = np.full((600, 3), 0.1)
    q[np.arange(600), true] = 0.8
    q = q + rng.uniform(0, 0.05, q.shape)
    q /= q.sum(axis=1, keepdims=True)
    labels = true.copy()
    flipped = (true == 0) & (rng.random(600) < 0.3)
    labels[flipped] = 1  # class 0 is flipped to 1, never the other way
    return q, labels, flipped


def test_confident_labels_take_the_most_probable_class_at_its_threshold():
    q = np.array([[0.9, 0.1], [0.7, 0.3], [0.45, 0.55], [0.2, 0.8]])
    labels = np.array([0, 0, 1, 1])  # thresholds: class 0 (0.9 + 0.7) / 2 = 0.8, class 1 (0.55 + 0.8) / 2 = 0.675
    np.testing.assert_array_equal(confident_labels(q, labels), [0, -1, -1, 1])
    # thresholds from the second and last samples only: class 0 at 0.7, class 1 at 0.8
    np.testing.assert_array_equal(confident_labels(q, labels, seen=np.array([0, 1, 0, 1], bool)), [0, 0, -1, 1])


def test_joint_counts_confident_classes_and_rescales_rows_to_the_label_counts():
    q = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.0, 0.1, 0.9]])
    labels = np.array([0, 0, 1, 1, 2])
    # thresholds 0.9 / 0.5 / 0.9; label 1: one sample confidently 1, one confidently 0
    expected = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=float)
    np.testing.assert_allclose(estimate_joint(q, labels), expected)
    sparse = SparseProbs.from_dense(q, top_k=2)
    np.testing.assert_allclose(estimate_joint(sparse, labels, num_classes=3), expected)


def test_wrong_label_probability_is_bayes_rule_on_the_estimated_noise_model():
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(4), 300)
    labels = rng.integers(0, 4, 300)
    p_wrong, likely = wrong_label_probability(q, labels, pseudo_count=0.5)
    joint = estimate_joint(q, labels) + 0.5
    given_if_true = joint / joint.sum(axis=0, keepdims=True)  # [y, j] = P(label y | true j)
    like = q * given_if_true[labels]
    np.testing.assert_allclose(p_wrong, 1 - like[np.arange(300), labels] / like.sum(axis=1))
    like[np.arange(300), labels] = -1
    np.testing.assert_array_equal(likely, like.argmax(axis=1))
    again, _ = wrong_label_probability(SparseProbs.from_dense(q), labels, num_classes=4, pseudo_count=0.5)
    np.testing.assert_allclose(again, p_wrong)


def test_the_noise_model_ranks_pair_flips_first_and_names_their_source():
    q, labels, flipped = _pair_flips()
    p_wrong, likely = wrong_label_probability(q, labels)
    assert p_wrong.shape == (600,) and np.all((0 <= p_wrong) & (p_wrong <= 1))
    assert auroc(p_wrong, flipped) > 0.99
    assert np.all(likely[flipped] == 0)
    # two samples labelled 1 with the same given-label probability and the same runner-up share: the
    # one whose runner-up is class 0, the source of the flips, is more likely wrong
    pair = np.array([[0.6, 0.4, 0.0], [0.0, 0.4, 0.6]])
    both, _ = wrong_label_probability(np.vstack([q, pair]), np.r_[labels, 1, 1])
    assert both[-2] > both[-1] + 0.2


def test_a_posterior_on_the_given_label_alone_is_never_wrong():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    p_wrong, likely = wrong_label_probability(q, np.array([0, 1, 0]))
    np.testing.assert_allclose(p_wrong[:2], 0.0)
    np.testing.assert_array_equal(likely, [0, 1, 1])  # no other class has mass: the given label


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: wrong_label_probability(np.ones(3), np.zeros(3, int)), ValueError,
     r"`posterior` must be an \(N, C\) array with C >= 2, got shape \(3,\)"),
    (lambda: wrong_label_probability(-np.ones((2, 2)), np.zeros(2, int)), ValueError,
     "`posterior` must hold finite, non-negative probabilities"),
    (lambda: wrong_label_probability(np.ones((2, 2)), np.array([0, 2])), ValueError,
     r"`given_labels` holds 1 value\(s\) outside \[0, num_classes=2\), first at position 1: 2"),
    (lambda: wrong_label_probability(np.ones((2, 2)), np.zeros(3, int)), ValueError,
     "`given_labels` must have length 2, got 3"),
    (lambda: wrong_label_probability(np.ones((2, 2)), np.zeros(2, int), pseudo_count=0), ValueError,
     "`pseudo_count` must be > 0, got 0"),
    (lambda: wrong_label_probability(np.ones((2, 2)), np.zeros(2, int), seen=np.ones(3, bool)), ValueError,
     r"`seen` must be a bool array of shape \(2,\), got \(3,\)"),
    (lambda: estimate_joint(SparseProbs.from_dense(np.ones((2, 2))), np.zeros(2, int)), ValueError,
     "`num_classes` is required when `posterior` is a SparseProbs"),
    (lambda: estimate_joint(np.ones((2, 2)), np.zeros(2, int), num_classes=3), ValueError,
     "`posterior` has 2 columns but `num_classes` is 3"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_flip_concentration_is_the_share_of_estimated_flips_from_each_class_main_source():
    from fld_train.confident import flip_concentration

    joint = np.array([[90, 6, 4], [10, 80, 0], [3, 3, 94]], dtype=float)
    # off-diagonal: row 0 (6, 4), row 1 (10, 0), row 2 (3, 3): main sources 6 + 10 + 3 of 26
    assert flip_concentration(joint) == pytest.approx(19 / 26)
    assert flip_concentration(np.diag([5.0, 5.0])) == 0.0
    q, labels, _ = _pair_flips()
    assert flip_concentration(estimate_joint(q, labels)) == 1.0  # all estimated flips are 0 -> 1


def test_flip_asymmetry_is_one_for_one_way_flips_and_zero_for_two_way_ones():
    from fld_train.confident import flip_asymmetry

    joint = np.array([[90, 8, 2], [2, 80, 6], [1, 1, 94]], dtype=float)
    # row 0: source 1, forward 8, back J[1, 0] = 2; row 1: source 2, forward 6, back J[2, 1] = 1;
    # row 2: source 0 (tie 1, 1: the first), forward 1, back J[0, 2] = 2
    assert flip_asymmetry(joint) == pytest.approx(((8 - 2) + (6 - 1) + (1 - 2)) / (8 + 6 + 1))
    assert flip_asymmetry(np.array([[50, 10], [10, 50]], dtype=float)) == 0.0  # both ways alike
    assert flip_asymmetry(np.diag([5.0, 5.0])) == 0.0
    q, labels, _ = _pair_flips()
    assert flip_asymmetry(estimate_joint(q, labels)) == 1.0


def _uniform_flips(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """A joint whose every class has ``per_class`` flips drawn uniformly from the other classes."""
    joint = np.zeros((num_classes, num_classes))
    for y in range(num_classes):
        others = np.delete(np.arange(num_classes), y)
        joint[y, others] = rng.multinomial(per_class, np.full(num_classes - 1, 1 / (num_classes - 1)))
    return joint


@pytest.mark.parametrize(("num_classes", "per_class"), [(10, 80), (10, 30), (100, 40), (3, 50)])
def test_chance_concentration_is_what_uniform_flips_show(num_classes, per_class):
    rng = np.random.default_rng(0)
    simulated = [flip_concentration(_uniform_flips(num_classes, per_class, rng)) for _ in range(300)]
    expected = chance_flip_concentration(_uniform_flips(num_classes, per_class, rng))
    assert expected == pytest.approx(np.mean(simulated), abs=0.005)
    assert expected > 1 / (num_classes - 1)  # few flips per source: the main one holds more by chance


def test_chance_concentration_edges():
    assert chance_flip_concentration(np.eye(4) * 10) == 0.0  # no estimated flip
    assert chance_flip_concentration(np.array([[5.0, 3.0], [2.0, 7.0]])) == 1.0  # two classes: one source
    many, few = (chance_flip_concentration(np.full((10, 10), n)) for n in (100.0, 5.0))
    assert 1 / 9 < many < few  # more flips per source: nearer 1 / (C - 1)
