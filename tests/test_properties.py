"""Property-based tests of the pure core: random inputs never crash it or break its invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fld_train import RelabeledDataset, scoring
from fld_train.store import SampleStore

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scoring_inputs(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    one_class = draw(st.booleans())
    given = np.zeros(n, dtype=np.int64) if one_class else rng.integers(0, c, n)
    probs = rng.dirichlet(np.full(c, draw(st.sampled_from([0.05, 1.0, 10.0]))), size=n)
    knn = rng.dirichlet(np.ones(c), size=n)
    knn[rng.random(n) < 0.2] = 0.0  # samples without neighbours
    seen = rng.random(n) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    current = np.where(rng.random(n) < 0.3, rng.integers(0, c, n), given)
    early = rng.random(n) < 0.3
    return given, probs, knn, seen, current, early


@SETTINGS
@given(scoring_inputs(), st.sampled_from(scoring.ACTIONS), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_scoring_invariants(inputs, action, weight, budget, class_budget):
    given_labels, probs, knn, seen, current, early = inputs
    n, c = probs.shape
    ev = scoring.evaluate(given_labels, probs, knn, seen=seen, action=action, model_weight=weight,
                          current_labels=current, learned_at_first_sight=early,
                          max_change_fraction=budget, max_class_change_fraction=class_budget)
    assert ev.suggested_labels.shape == (n,)
    assert np.all((ev.suggested_labels >= 0) & (ev.suggested_labels < c))
    assert np.all(np.isfinite(ev.scores)) and np.all((ev.scores >= 0) & (ev.scores <= 1))
    assert not np.any(ev.flagged & ~seen)
    assert np.all(ev.decisions[~seen] == scoring.UNSEEN) and np.all(ev.scores[~seen] == 0)
    flagged = np.flatnonzero(ev.flagged)
    assert np.all(ev.suggested_labels[flagged] != given_labels[flagged])  # a flag names another class
    changed = ev.decisions != scoring.KEEP
    assert np.all(ev.flagged[changed & seen])  # only flagged samples get a decision
    assert np.all((ev.weights >= 0) & (ev.weights <= 1))
    if action != "relabel":
        assert not np.any(ev.decisions == scoring.RELABEL)
    relabel = ev.decisions == scoring.RELABEL
    new_changes = relabel & (ev.suggested_labels != current)
    assert new_changes.sum() <= np.floor(budget * seen.sum())


@st.composite
def operations(draw):
    n = draw(st.integers(1, 12))
    ops = draw(st.lists(st.tuples(st.sampled_from(["label", "weight", "revert"]),
                                  st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True),
                                  st.integers(0, 2)), max_size=15))
    return n, ops


@SETTINGS
@given(operations())
def test_dataset_original_labels_never_change_and_the_audit_trail_replays(case):
    n, ops = case
    labels = np.arange(n) % 3
    ds = RelabeledDataset(list(zip(np.zeros(n), labels)), num_classes=3)
    for kind, idx, value in ops:
        if kind == "label":
            ds.set_labels(idx, [value] * len(idx), reason="op")
        elif kind == "weight":
            ds.set_weights(idx, value / 2, reason="op")
        else:
            ds.revert(idx)
        np.testing.assert_array_equal(ds.original_labels, labels)
    replay_labels, replay_weights = labels.copy(), np.ones(n)
    for change in ds.audit_log:
        if change.field == "review":
            continue
        target = replay_labels if change.field == "label" else replay_weights
        assert target[change.index] == change.old  # each entry starts where the last one ended
        target[change.index] = change.new
    np.testing.assert_array_equal(replay_labels, ds.current_labels)
    np.testing.assert_allclose(replay_weights, ds.weights)
    assert ds.has_reduced_weights == bool((ds.weights < 1).any())
    ds.revert()
    np.testing.assert_array_equal(ds.current_labels, labels)


@SETTINGS
@given(st.integers(1, 30), st.integers(2, 5), st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_store_stays_finite_and_counts_each_sample_once_per_epoch(n, c, seed, epochs):
    rng = np.random.default_rng(seed)
    store = SampleStore(n, c)
    for epoch in range(epochs):
        for _ in range(3):
            b = int(rng.integers(1, 2 * n + 1))
            idx = rng.integers(0, n, b)
            logits = rng.normal(scale=rng.choice([1.0, 1e3]), size=(b, c))
            logits[rng.random(b) < 0.1] = np.nan
            store.update(idx, rng.integers(0, c, b), logits, rng.normal(size=(b, 4)), epoch)
    assert np.all(store.seen_epochs <= epochs)
    for arr in (store.prob_sum, store.margin_sum, store.model_probs().values, store.given_prob_variability()):
        assert np.all(np.isfinite(arr))
    assert np.all(np.isfinite(store.embeddings.astype(np.float32)))
    seen = store.seen
    np.testing.assert_allclose(store.model_probs().to_dense(c)[seen].sum(axis=1), 1.0, rtol=1e-5)
