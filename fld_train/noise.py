"""Label-noise injection for demos, tests and benchmarks (numpy only)."""

from __future__ import annotations

import numpy as np

from fld_train._validation import check_choice, check_float, check_int, check_labels

NOISE_KINDS = ("symmetric", "pairflip")


def inject_noise(
    labels: np.ndarray,
    num_classes: int,
    *,
    rate: float,
    kind: str = "symmetric",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * N)`` labels, chosen at random.

    Args:
        labels: ``(N,)`` true labels.
        num_classes: number of classes C.
        rate: share of labels to flip, in ``[0, 1]``.
        kind: ``"symmetric"`` flips to a uniformly random *other* class; ``"pairflip"`` flips class
            ``j`` to ``(j + 1) % C``.
        seed: random seed.

    Returns:
        ``(noisy_labels, noise_mask)``: ``(N,)`` int64 labels and ``(N,)`` bool, True where flipped.
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    true = check_labels("labels", labels, num_classes=num_classes)
    rate = check_float("rate", rate, low=0.0, high=1.0)
    kind = check_choice("kind", kind, NOISE_KINDS)
    rng = np.random.default_rng(seed)
    n = true.size
    flip = rng.choice(n, size=int(round(rate * n)), replace=False)
    noisy = true.copy()
    if kind == "symmetric":
        offset = rng.integers(1, num_classes, size=flip.size)
    else:
        offset = np.ones(flip.size, dtype=np.int64)
    noisy[flip] = (true[flip] + offset) % num_classes
    mask = np.zeros(n, dtype=bool)
    mask[flip] = True
    return noisy, mask
