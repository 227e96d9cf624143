import math

import numpy as np
import pytest

from fld_train.store import SampleStore, softmax


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture
def store() -> SampleStore:
    """Three samples, two classes, two epochs; every number below is computed by hand."""
    s = SampleStore(num_samples=3, num_classes=2)
    emb = np.eye(3, 4, dtype=np.float32)
    # epoch 0, batch 1: sample 0 (label 0) confident and right; sample 1 (label 1) undecided
    s.update(np.array([0, 1]), np.array([0, 1]), np.array([[2.0, 0.0], [0.0, 0.0]]), emb[:2], epoch=0)
    # epoch 0, batch 2: sample 0 again in the same epoch (must be skipped); sample 2 (label 0) wrong
    s.update(np.array([0, 2]), np.array([0, 0]), np.array([[9.0, 0.0], [0.0, math.log(3)]]),
             np.stack([emb[1], emb[2]]), epoch=0)
    # epoch 1: sample 0 forgotten; sample 1 learned (its batch label is an override: 0);
    # sample 2 learned; sample 2 appears twice (second row ignored)
    s.update(np.array([0, 1, 2, 2]), np.array([0, 0, 0, 0]),
             np.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0], [-5.0, 5.0]]),
             np.ones((4, 4), dtype=np.float32) * np.arange(4)[:, None], epoch=1)
    return s


def test_given_labels_are_the_first_seen_labels(store):
    np.testing.assert_array_equal(store.given_labels, [0, 1, 0])


def test_counts_each_sample_once_per_epoch(store):
    np.testing.assert_array_equal(store.seen_epochs, [2, 2, 2])
    np.testing.assert_array_equal(store.last_epoch, [1, 1, 1])


def test_mean_given_probability_matches_hand_computation(store):
    expected = [(_sig(2) + _sig(-1)) / 2, (0.5 + _sig(2)) / 2, (0.25 + _sig(3)) / 2]
    np.testing.assert_allclose(store.mean_given_prob(), expected, rtol=1e-12)


def test_variability_is_std_over_epochs(store):
    expected = [abs(_sig(2) - _sig(-1)) / 2, abs(0.5 - _sig(2)) / 2, abs(0.25 - _sig(3)) / 2]
    np.testing.assert_allclose(store.given_prob_variability(), expected, rtol=1e-9)


def test_aum_margin_matches_hand_computation(store):
    np.testing.assert_allclose(store.mean_margin(), [(2 - 1) / 2, (0 + 2) / 2, (-math.log(3) + 3) / 2])


def test_first_learned_and_forgetting(store):
    np.testing.assert_array_equal(store.first_epoch, [0, 0, 0])
    np.testing.assert_array_equal(store.first_learned_epoch, [0, 1, 1])
    np.testing.assert_array_equal(store.forgetting_events, [1, 0, 0])


def test_model_probs_are_the_mean_softmax_when_all_classes_fit(store):
    probs = store.model_probs().to_dense(2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0, 0], (_sig(2) + _sig(-1)) / 2, rtol=1e-6)
    np.testing.assert_allclose(probs[2, 1], (0.75 + 1 - _sig(3)) / 2, rtol=1e-6)


def test_top_k_equals_the_dense_mean_softmax_when_k_covers_the_classes():
    rng = np.random.default_rng(0)
    s = SampleStore(50, 6, top_k=6)
    total = np.zeros((50, 6))
    for epoch in range(4):
        logits = rng.normal(scale=3, size=(50, 6))
        s.update(np.arange(50), rng.integers(0, 6, 50), logits, None, epoch)
        total += softmax(logits)
    np.testing.assert_allclose(s.model_probs().to_dense(6), total / 4, rtol=1e-6)


def test_top_k_keeps_the_classes_with_the_largest_sums():
    s = SampleStore(1, 100, top_k=2)
    assert s.top_k == 2 and s.top_classes.shape == (1, 2)
    for epoch, favourite in enumerate([7, 7, 3, 7]):
        logits = np.zeros((1, 100))
        logits[0, favourite] = 10.0
        logits[0, 50] = 8.0  # always second
        s.update(np.array([0]), np.array([7]), logits, None, epoch)
    dense = np.zeros(100)
    for favourite in [7, 7, 3, 7]:
        z = np.zeros(100)
        z[favourite], z[50] = 10.0, 8.0
        dense += softmax(z[None])[0] / 4
    mp = s.model_probs()
    assert set(mp.classes[0]) == {7, 3}  # the true two largest means (50 is third)
    # a class gathers probability only in epochs where it is among the top 2 (7 misses 4e-5 once)
    np.testing.assert_allclose(mp.to_dense(100)[0, [3, 7]], dense[[3, 7]], atol=1e-4)


def test_embeddings_wider_than_embedding_dim_are_projected_and_keep_their_neighbours():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 512))
    y = rng.integers(0, 5, 400)
    x = centres[y] + 0.3 * rng.normal(size=(400, 512))
    s = SampleStore(400, 5, embedding_dim=64)
    s.update(np.arange(400), y, np.zeros((400, 5)), x, epoch=0)
    assert s.embeddings.shape == (400, 64) and s.projection.shape == (512, 64)
    e = s.embeddings.astype(np.float32)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    assert np.mean(y[sims.argmax(axis=1)] == y) > 0.98
    narrow = SampleStore(4, 2, embedding_dim=64)
    narrow.update(np.arange(4), np.zeros(4, int), np.zeros((4, 2)), np.ones((4, 8)), epoch=0)
    assert narrow.embeddings.shape == (4, 8) and narrow.projection is None


def test_imagenet_sized_store_fits_in_one_gigabyte():
    nbytes = SampleStore.estimate_nbytes(1_281_167, 1000, 128)
    assert nbytes <= 1e9, nbytes
    s = SampleStore(1000, 1000, embedding_dim=128)
    s.update(np.arange(1000), np.zeros(1000, int), np.zeros((1000, 1000)), np.ones((1000, 2048)), epoch=0)
    assert s.nbytes - s.projection.nbytes == SampleStore.estimate_nbytes(1000, 1000, 128)


def test_memory_mapped_store_writes_npy_files_and_restores_in_place(tmp_path, store):
    s = SampleStore(3, 2, memmap_dir=tmp_path)
    s.load_state_dict(store.state_dict())
    assert isinstance(s.embeddings, np.memmap) and isinstance(s.top_prob_sum, np.memmap)
    s.embeddings.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "embeddings.npy"), store.embeddings)
    np.testing.assert_array_equal(s.top_prob_sum, store.top_prob_sum)


def test_embeddings_hold_the_latest_epoch_normalised(store):
    np.testing.assert_array_equal(store.embeddings[:, 0], [0.0, 0.5, 0.5])  # rows (k, k, k, k) / 2k
    assert store.embeddings.dtype == np.float16


def test_huge_embeddings_do_not_overflow_float16():
    s = SampleStore(2, 2)
    s.update(np.array([0, 1]), np.array([0, 1]), np.zeros((2, 2)), np.array([[1e6, 0.0], [0.0, 0.0]]), 0)
    np.testing.assert_array_equal(s.embeddings, [[1.0, 0.0], [0.0, 0.0]])


def test_nonfinite_rows_are_skipped_and_counted():
    s = SampleStore(4, 2)
    logits = np.array([[0.0, 1.0], [np.nan, 0.0], [0.0, 0.0], [1.0, 1.0]])
    emb = np.array([[1.0], [1.0], [np.inf], [1.0]])
    assert s.update(np.array([0, 1, 2, 3]), np.array([0, 0, 0, 1]), logits, emb, epoch=0) == 2
    assert s.nonfinite_rows == 2
    np.testing.assert_array_equal(s.seen, [True, False, False, True])
    assert np.isfinite(s.prob_sum).all() and np.isfinite(s.embeddings.astype(float)).all()
    # sample 2 again, twice: the first row is broken, the finite second row must still count
    s.update(np.array([2, 2]), np.array([0, 0]), np.array([[np.inf, 0.0], [0.0, 0.0]]), None, epoch=0)
    assert s.seen[2] and s.nonfinite_rows == 3


def test_first_epoch_is_recorded():
    s = SampleStore(2, 2)
    s.update(np.array([0]), np.array([0]), np.zeros((1, 2)), None, epoch=2)
    s.update(np.array([0, 1]), np.array([0, 1]), np.zeros((2, 2)), None, epoch=3)
    np.testing.assert_array_equal(s.first_epoch, [2, 3])


def test_unseen_samples_have_zero_statistics():
    s = SampleStore(4, 3)
    s.update(np.array([1]), np.array([2]), np.zeros((1, 3)), None, epoch=0)
    np.testing.assert_array_equal(s.seen, [False, True, False, False])
    assert s.mean_given_prob()[0] == 0.0
    assert s.embeddings is None


def test_declared_given_labels_win_over_batch_labels():
    s = SampleStore(2, 2)
    s.set_given_labels([1, 0])
    s.update(np.array([0, 1]), np.array([0, 0]), np.array([[0.0, 0.0], [0.0, 0.0]]), None, epoch=0)
    np.testing.assert_array_equal(s.given_labels, [1, 0])


def test_state_dict_round_trip(store):
    other = SampleStore(3, 2)
    other.load_state_dict(store.state_dict())
    for key, value in store.state_dict().items():
        np.testing.assert_array_equal(getattr(other, key), value)


def test_load_state_dict_tolerates_missing_keys(store):
    state = store.state_dict()
    del state["forgetting_events"], state["embeddings"]
    other = SampleStore(3, 2)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.forgetting_events, 0)
    np.testing.assert_array_equal(other.prob_sum, store.prob_sum)


def test_load_state_dict_refuses_another_dataset(store):
    with pytest.raises(ValueError, match="\\(3, 2, 2\\)"):
        SampleStore(5, 2).load_state_dict(store.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"indices": [0, 7]}, "outside \\[0, num_samples=3\\)"),
        ({"labels": [0, 2]}, "batch label 2 \\(sample index 1\\) is outside \\[0, num_classes=2\\)"),
        ({"logits": np.zeros((2, 3))}, "num_classes=2"),
    ],
)
def test_update_rejects_bad_input_without_changing_state(kwargs, match):
    s = SampleStore(3, 2)
    args = {"indices": [0, 1], "labels": [0, 1], "logits": np.zeros((2, 2))} | kwargs
    with pytest.raises((ValueError, IndexError), match=match):
        s.update(np.asarray(args["indices"]), np.asarray(args["labels"]), args["logits"], None, epoch=0)
    assert not s.seen.any()


def test_softmax_is_stable_for_large_logits():
    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])


@pytest.mark.parametrize(("n", "c"), [(0, 2), (3, 1)])
def test_constructor_validates_sizes(n, c):
    with pytest.raises(ValueError, match="num_samples|num_classes"):
        SampleStore(n, c)
