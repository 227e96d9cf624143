"""How likely each given label is wrong: a two-component mixture over the posterior of the given label.

Where labels were flipped at random, a wrong label's posterior looks like the posterior of one of a
sample's *other* classes, and a right label's like the posterior of its *most probable* class. Both
densities are read off the posterior itself (histograms over all samples), so the only parameter
left to fit is their mixing share, the rate of wrong labels (expectation-maximisation with the two
densities fixed). A sample's responsibility under the wrong-label component is then the probability
that its given label is wrong.

The model assumes that wrong labels look random. Noise that follows what the model finds confusable
(pair-flip, instance-dependent) gives a wrong label a posterior like a hard right label's, so the rate
is underestimated there and the probabilities stay low: the estimate errs towards "the label is
right". That is the side a down-weighting rule needs: on clean data, where a weak model is unsure
of many right labels, they keep (almost) their full weight (docs/benchmarks.md, "The relabel loop").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fld_train._validation import check_int, check_labels
from fld_train.sparse import Segments, SparseProbs

#: Histogram bins over ``[0, 1]`` for the two component densities.
DEFAULT_BINS = 40
_PSEUDO_COUNT = 0.5  # per bin, so that no bin has zero density under either component
_MAX_ITERATIONS = 1000
_TOLERANCE = 1e-7


@dataclass(frozen=True)
class NoiseEstimate:
    """The fitted mixture.

    Attributes:
        rate: estimated share of wrong labels among the samples fitted, in ``[0, 1]``.
        wrong_prob: ``(N,)`` probability that each sample's given label is wrong (0 outside the mask).
    """

    rate: float
    wrong_prob: np.ndarray


def estimate_noise(
    posterior: np.ndarray | SparseProbs,
    given_labels: np.ndarray,
    *,
    num_classes: int | None = None,
    mask: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
) -> NoiseEstimate:
    """Fit the random-label mixture to a class posterior and the given labels.

    Args:
        posterior: ``(N, C)`` per-sample class probabilities (rows summing to at most 1), or as
            :class:`~fld_train.sparse.SparseProbs` (absent classes count as 0).
        given_labels: ``(N,)`` the labels judged.
        num_classes: C; needed only when ``posterior`` is sparse.
        mask: ``(N,)`` bool, samples to fit (default all); the others get probability 0.
        bins: histogram bins over ``[0, 1]`` for the two densities.

    Returns:
        A :class:`NoiseEstimate`.
    """
    if num_classes is None:
        if isinstance(posterior, SparseProbs):
            raise ValueError("`num_classes` is required when `posterior` is SparseProbs.")
        num_classes = int(np.shape(posterior)[1]) if np.ndim(posterior) == 2 else -1
    c = check_int("num_classes", num_classes, minimum=2)
    given = check_labels("given_labels", given_labels, num_classes=c)
    n = given.size
    if isinstance(posterior, SparseProbs):
        probs = posterior.check("posterior", n, c)
    elif np.shape(posterior) != (n, c):
        raise ValueError(f"`posterior` must have shape {(n, c)}, got {np.shape(posterior)}.")
    else:
        probs = SparseProbs.from_dense(posterior)
    if mask is None:
        mask = np.ones(n, dtype=bool)
    elif np.shape(mask) != (n,):
        raise ValueError(f"`mask` must be a bool array of shape ({n},), got {np.shape(mask)}.")
    bins = check_int("bins", bins, minimum=2)
    classes = np.concatenate([given[:, None], probs.classes], axis=1)  # every row gets a segment
    values = np.concatenate([np.zeros((n, 1)), probs.values], axis=1)
    seg = Segments.merge(classes, values[None])
    return estimate_from_segments(seg, seg.values[0], given, c, np.asarray(mask, dtype=bool), bins)


def estimate_from_segments(
    seg: Segments, q: np.ndarray, given: np.ndarray, num_classes: int, mask: np.ndarray, bins: int
) -> NoiseEstimate:
    """:func:`estimate_noise` on a posterior already merged into segments (no validation).

    Args:
        seg: the posterior's segments; every row holds its given class.
        q: ``(S,)`` posterior value of each segment.
        given: ``(N,)`` given labels.
        num_classes: C.
        mask: ``(N,)`` bool, samples to fit.
        bins: histogram bins.
    """
    n = seg.num_rows
    wrong_prob = np.zeros(n)
    if not mask.any():
        return NoiseEstimate(0.0, wrong_prob)
    top_segment = seg.row_argmax_segment(q)
    in_mask = mask[seg.rows]
    others = in_mask.copy()
    others[top_segment] = False
    listed = np.bincount(seg.rows[in_mask], minlength=n)[mask]
    unlisted = float(np.sum(num_classes - listed))  # classes with posterior 0

    def bin_of(values: np.ndarray) -> np.ndarray:
        return np.clip((values * bins).astype(np.int64), 0, bins - 1)

    right = np.bincount(bin_of(q[top_segment][mask]), minlength=bins).astype(np.float64)
    wrong = np.bincount(bin_of(q[others]), minlength=bins).astype(np.float64)
    wrong[0] += unlisted
    right, wrong = right + _PSEUDO_COUNT, wrong + _PSEUDO_COUNT
    right, wrong = right / right.sum(), wrong / wrong.sum()

    given_bin = bin_of(seg.at(q, given)[mask])
    counts = np.bincount(given_bin, minlength=bins)
    rate = 0.5
    for _ in range(_MAX_ITERATIONS):
        resp = rate * wrong / (rate * wrong + (1.0 - rate) * right)
        new_rate = float(counts @ resp) / given_bin.size
        converged = abs(new_rate - rate) < _TOLERANCE
        rate = new_rate
        if converged:
            break
    resp = rate * wrong / (rate * wrong + (1.0 - rate) * right)
    wrong_prob[mask] = resp[given_bin]
    return NoiseEstimate(rate, wrong_prob)
