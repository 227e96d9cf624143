"""Label-noise injection for demos, tests and benchmarks (numpy only)."""

from __future__ import annotations

import numpy as np

from fld_train._validation import check_choice, check_float, check_int, check_labels

NOISE_KINDS = ("symmetric", "pairflip", "instance", "clustered")


def inject_noise(
    labels: np.ndarray,
    num_classes: int,
    *,
    rate: float,
    kind: str = "symmetric",
    seed: int = 0,
    features: np.ndarray | None = None,
    cluster_size: int = 20,
    probs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * N)`` labels.

    Args:
        labels: ``(N,)`` true labels.
        num_classes: number of classes C.
        rate: share of labels to flip, in ``[0, 1]``.
        kind: ``"symmetric"`` flips random samples to a uniformly random *other* class;
            ``"pairflip"`` flips random samples of class ``j`` to ``(j + 1) % C``; ``"instance"``
            flips each chosen sample to the class a model finds most confusable with its true one
            (the most probable other class in ``probs``), choosing samples with probability
            proportional to that confusion; ``"clustered"``
            flips whole neighbourhoods, as someone planting labels would: it picks a random sample,
            flips it and its ``cluster_size - 1`` nearest unflipped same-class neighbours (in
            ``features``) to one random other class, and repeats.
        seed: random seed.
        features: ``(N, D)`` inputs or embeddings; required for ``"clustered"``.
        cluster_size: samples per flipped neighbourhood (``"clustered"``).
        probs: ``(N, C)`` class probabilities of a model trained on the true labels, out of sample
            (for example ``cross_val_predict``); required for ``"instance"``.

    Returns:
        ``(noisy_labels, noise_mask)``: ``(N,)`` int64 labels and ``(N,)`` bool, True where flipped.
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    true = check_labels("labels", labels, num_classes=num_classes)
    rate = check_float("rate", rate, low=0.0, high=1.0)
    kind = check_choice("kind", kind, NOISE_KINDS)
    rng = np.random.default_rng(seed)
    n = true.size
    if kind == "clustered":
        return _clustered(true, num_classes, round(rate * n), rng, features,
                          check_int("cluster_size", cluster_size, minimum=1))
    if kind == "instance":
        return _instance(true, num_classes, round(rate * n), rng, probs)
    flip = rng.choice(n, size=round(rate * n), replace=False)
    noisy = true.copy()
    if kind == "symmetric":
        offset = rng.integers(1, num_classes, size=flip.size)
    else:
        offset = np.ones(flip.size, dtype=np.int64)
    noisy[flip] = (true[flip] + offset) % num_classes
    mask = np.zeros(n, dtype=bool)
    mask[flip] = True
    return noisy, mask


def _clustered(
    true: np.ndarray, num_classes: int, budget: int, rng: np.random.Generator,
    features: np.ndarray | None, cluster_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    if features is None:
        raise ValueError("kind='clustered' needs `features` (N, D) to find neighbourhoods.")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != true.size:
        raise ValueError(f"`features` must have shape ({true.size}, D), got {x.shape}.")
    noisy, mask = true.copy(), np.zeros(true.size, dtype=bool)
    while mask.sum() < budget:
        centre = int(rng.choice(np.flatnonzero(~mask)))
        pool = np.flatnonzero(~mask & (true == true[centre]))
        nearest = pool[np.argsort(((x[pool] - x[centre]) ** 2).sum(axis=1), kind="stable")]
        members = nearest[: min(cluster_size, budget - int(mask.sum()))]
        target = (true[centre] + rng.integers(1, num_classes)) % num_classes
        noisy[members] = target
        mask[members] = True
    return noisy, mask


def _instance(
    true: np.ndarray, num_classes: int, budget: int, rng: np.random.Generator, probs: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if probs is None:
        raise ValueError("kind='instance' needs `probs` (N, C): a model's class probabilities.")
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (true.size, num_classes):
        raise ValueError(f"`probs` must have shape ({true.size}, {num_classes}), got {p.shape}.")
    other = p.copy()
    other[np.arange(true.size), true] = -np.inf
    target = other.argmax(axis=1)
    confusion = np.clip(other.max(axis=1), 1e-6, None)
    flip = rng.choice(true.size, size=budget, replace=False, p=confusion / confusion.sum())
    noisy = true.copy()
    noisy[flip] = target[flip]
    mask = np.zeros(true.size, dtype=bool)
    mask[flip] = True
    return noisy, mask
