import numpy as np
import pytest

from fld_train.check import run_check
from fld_train.store import SampleStore


def _store(n=600, c=5, flip=60, seed=0):
    """Clusters per class; the model predicts the true class; ``flip`` given labels are wrong."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, n)
    given = truth.copy()
    wrong = rng.choice(n, flip, replace=False)
    given[wrong] = (truth[wrong] + rng.integers(1, c, flip)) % c
    store = SampleStore(n, c)
    store.set_given_labels(given)
    emb = rng.normal(size=(c, 16))[truth] + 0.3 * rng.normal(size=(n, 16))
    for epoch in range(3):
        logits = rng.normal(size=(n, c))
        logits[np.arange(n), truth] += 3.0
        store.update(np.arange(n), given, logits, emb, epoch)
    mask = np.zeros(n, bool)
    mask[wrong] = True
    return store, truth, mask


def test_check_flags_the_wrong_labels_and_suggests_the_true_ones():
    store, truth, mask = _store()
    ev = run_check(store, k=10, action="relabel")
    assert np.mean(ev.flagged == mask) > 0.97
    assert np.mean(ev.suggested_labels[mask] == truth[mask]) > 0.95
    assert set(ev.signals) >= {"aum_margin", "knn_agreement", "forgetting_events"}


def test_check_votes_with_the_labels_it_is_given():
    store, truth, mask = _store()
    plain = run_check(store)
    fixed = run_check(store, vote_labels=truth)  # neighbours vote with corrected labels
    assert fixed.signals["knn_agreement"][~mask].mean() > plain.signals["knn_agreement"][~mask].mean()


def test_check_needs_embeddings():
    store = SampleStore(3, 2)
    store.update(np.arange(3), np.zeros(3, int), np.zeros((3, 2)), None, 0)
    with pytest.raises(ValueError, match="holds no embeddings"):
        run_check(store)


def test_cluster_votes_join_the_neighbourhood_signal():
    store, _, mask = _store()
    plain = run_check(store)
    both = run_check(store, cluster_votes=True)
    assert np.mean(both.flagged == mask) > 0.97
    assert not np.allclose(both.signals["knn_agreement"], plain.signals["knn_agreement"])


def test_check_passes_the_witness_weight_on():
    store, _, _ = _store()
    model_only = run_check(store, model_weight=1.0)
    np.testing.assert_allclose(model_only.signals["posterior_given"], model_only.signals["model_given_prob"])
    with pytest.raises(ValueError, match="`model_weight` must be in"):
        run_check(store, model_weight=-0.1)


def test_check_passes_the_ranking_on():
    store, _, _ = _store()
    margin = run_check(store, max_flag_class_fraction=1.0, ranking="margin")
    noise = run_check(store, max_flag_class_fraction=1.0, ranking="noise_model")
    given = store.given_labels
    np.testing.assert_array_equal(np.bincount(given[noise.flagged], minlength=store.num_classes),
                                  np.bincount(given[margin.flagged], minlength=store.num_classes))
    assert not np.allclose(noise.scores, margin.scores)
    with pytest.raises(ValueError, match="`target_precision=0.8` needs `ranking='margin'`"):
        run_check(store, ranking="noise_model", target_precision=0.8)


def test_k_is_chosen_from_the_data_unless_given():
    from fld_train import knn

    store, _, mask = _store()
    auto = run_check(store)
    assert auto.knn_k in knn.K_CANDIDATES
    assert auto.knn_k == knn.choose_k(store.embeddings, store.given_labels, store.num_classes)
    assert np.mean(auto.flagged == mask) > 0.97
    assert run_check(store, k=7).knn_k == 7


@pytest.mark.parametrize(("k", "error", "match"), [
    ("many", ValueError, "`k` must be 'auto' or an int >= 1, got 'many'"),
    (0, ValueError, "`k` must be an int >= 1, got 0"),
    (2.5, TypeError, "`k` must be an int, got 2.5"),
])
def test_bad_k_names_the_argument_and_the_choices(k, error, match):
    store, _, _ = _store()
    with pytest.raises(error, match=match):
        run_check(store, k=k)
