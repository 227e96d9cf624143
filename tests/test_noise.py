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
