import numpy as np
import pytest

from fld_train.noise import inject_noise


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
def test_flips_exactly_the_requested_share(kind):
    labels = np.repeat(np.arange(5), 40)
    noisy, mask = inject_noise(labels, 5, rate=0.25, kind=kind, seed=1)
    assert mask.sum() == 50
    np.testing.assert_array_equal(noisy != labels, mask)
    if kind == "pairflip":
        np.testing.assert_array_equal(noisy[mask], (labels[mask] + 1) % 5)


def test_symmetric_noise_reaches_every_other_class_and_is_seeded():
    labels = np.zeros(3000, dtype=int)
    noisy, _ = inject_noise(labels, 4, rate=0.6, seed=3)
    assert set(np.unique(noisy)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(noisy, inject_noise(labels, 4, rate=0.6, seed=3)[0])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`rate` must be in \\[0.0, 1.0\\], got 1.5"):
        inject_noise(np.zeros(3, int), 2, rate=1.5)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        inject_noise(np.zeros(3, int), 2, rate=0.1, kind="random")


def test_clustered_noise_flips_whole_neighbourhoods_to_one_class():
    rng = np.random.default_rng(0)
    centres = np.repeat(np.arange(4), 50)
    x = rng.normal(size=(200, 2)) * 0.1 + np.stack([centres, np.zeros(200)], axis=1) * 10
    x[:, 1] += rng.normal(size=200) * 5  # each class stretched along y: neighbourhoods are local
    labels = centres % 2
    noisy, mask = inject_noise(labels, 2, rate=0.1, kind="clustered", features=x, cluster_size=20, seed=0)
    assert mask.sum() == 20  # one neighbourhood of 20
    np.testing.assert_array_equal(noisy != labels, mask)
    flipped = np.flatnonzero(mask)
    assert len(set(labels[flipped])) == 1 and len(set(noisy[flipped])) == 1
    # the group is spatially tight: its spread is far below its class's
    assert np.ptp(x[flipped, 1]) < 0.5 * np.ptp(x[labels == labels[flipped[0]], 1])


def test_clustered_noise_needs_features():
    with pytest.raises(ValueError, match="needs `features`"):
        inject_noise(np.zeros(5, int), 2, rate=0.2, kind="clustered")


def test_instance_noise_flips_toward_the_most_confusable_class():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    probs = rng.dirichlet(np.ones(3), size=300)
    noisy, mask = inject_noise(labels, 3, rate=0.3, kind="instance", probs=probs, seed=0)
    assert mask.sum() == 90
    other = probs.copy()
    other[np.arange(300), labels] = -1
    np.testing.assert_array_equal(noisy[mask], other.argmax(axis=1)[mask])
    # confusable samples are chosen more often than the rest
    confusion = other.max(axis=1)
    assert confusion[mask].mean() > confusion[~mask].mean()
    with pytest.raises(ValueError, match="needs `probs`"):
        inject_noise(labels, 3, rate=0.3, kind="instance")
