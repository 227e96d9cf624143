"""Confident learning's estimates from a per-sample posterior: class thresholds, the calibrated
confident joint, and the class-conditional noise model it implies.

Confident learning (Northcutt et al., 2021) counts a sample labelled ``y`` as *confidently* in class
``j`` when its posterior of ``j`` reaches ``t_j``, the mean posterior of ``j`` over the samples
labelled ``j``. Counting, per given label, which class each sample is confidently in and rescaling
each row to the number of samples with that label gives the *calibrated confident joint*
``J[y, j]``: about how many samples labelled ``y`` belong to class ``j``. Read down a column it is a
noise model, ``P(label y | true class j)``; Bayes' rule then gives each sample the probability that
its given label is wrong (:func:`wrong_label_probability`).

The estimate holds the model's own confusions as well as the label noise: clean samples of two
classes the model mixes up are counted as flips between them. It pays off where the noise is
class-conditional (each class's wrong labels mostly from one other class, as with pair-flips) and
costs where it is not (docs/benchmarks.md, "A class-conditional noise model"), which is why
:func:`fld_train.scoring.evaluate` uses it only with ``ranking="noise_model"``.

The functions work on :class:`~fld_train.sparse.Segments` (what the scoring builds, no ``N x C``
array); :func:`confident_labels`, :func:`estimate_joint` and :func:`wrong_label_probability` take a
dense or sparse posterior.
"""

from __future__ import annotations

import numpy as np

from fld_train._validation import check_int, check_labels, check_mask, check_positive
from fld_train.sparse import Segments, SparseProbs

#: Added to every cell of the joint before it is read as a noise model, so that a pair of classes
#: with no confident flip between them keeps a small, non-zero flip probability.
PSEUDO_COUNT = 1.0


def per_class_thresholds(
    given_values: np.ndarray, given: np.ndarray, mask: np.ndarray, num_classes: int
) -> np.ndarray:
    """Confident-learning thresholds: mean posterior of class ``j`` over samples labelled ``j``.

    Args:
        given_values: ``(N,)`` each sample's posterior of its given class.
        given: ``(N,)`` given labels.
        mask: ``(N,)`` bool, samples to use.
        num_classes: number of classes C.

    Returns:
        ``(C,)`` thresholds; ``inf`` for a class with no labelled sample (never confident).
    """
    g = given[mask]
    counts = np.bincount(g, minlength=num_classes).astype(np.float64)
    sums = np.bincount(g, weights=given_values[mask], minlength=num_classes)
    return np.divide(sums, counts, out=np.full(num_classes, np.inf), where=counts > 0)


def confident_classes(seg: Segments, q: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(N,)`` each row's most probable class among those it is confidently in (``q`` above 0 and at
    or above the class's threshold), or ``-1`` where it reaches none. ``q`` is ``(S,)``, one value per
    segment of ``seg``."""
    confident = (q >= thresholds[seg.classes] - 1e-9) & (q > 0)  # the tolerance absorbs rounding
    masked = np.where(confident, q, -np.inf)
    return np.where(np.isfinite(seg.row_max(masked)), seg.row_argmax(masked), -1)


def confident_joint(
    seg: Segments, q: np.ndarray, given: np.ndarray, seen: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """The calibrated confident joint of the posterior ``q`` (``(S,)`` per segment of ``seg``), with
    the class thresholds ``(C,)`` of :func:`per_class_thresholds` over the ``seen`` samples.

    Returns:
        ``(C, C)`` float: ``[y, j]`` counts the ``seen`` samples labelled ``y`` that are confidently
        in ``j`` (:func:`confident_classes`), each row rescaled to the number of seen samples
        labelled ``y`` (rows sum to those counts; a class no sample reaches keeps a zero row).
    """
    num_classes = thresholds.size
    confident = confident_classes(seg, q, thresholds)
    has = seen & (confident >= 0)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (given[has], confident[has]), 1.0)
    counts = np.bincount(given[seen], minlength=num_classes)
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1.0) * counts[:, None]


def flip_concentration(joint: np.ndarray) -> float:
    """The share of the estimated wrong labels that come from their given class's main source.

    Args:
        joint: ``(C, C)`` calibrated confident joint (:func:`confident_joint`).

    Returns:
        ``sum_y max_{j != y} J[y, j] / sum_y sum_{j != y} J[y, j]`` in ``[0, 1]``: near 1 when each
        class's wrong labels come from one other class (pair-flips), lower, toward ``1 / (C - 1)``,
        when they come from all classes alike (symmetric noise; the model's own confusions keep it
        above that); 0 when no wrong label is estimated.
    """
    off, forward, _ = _main_flips(joint)
    total = off.sum()
    return float(forward.sum() / total) if total > 0 else 0.0


def chance_flip_concentration(joint: np.ndarray) -> float:
    """The :func:`flip_concentration` that flips from all other classes alike would show by chance.

    Each class's estimated wrong labels (its row of ``joint`` off the diagonal, ``n_y`` of them) are
    spread over the ``C - 1`` other classes with equal probability; the expected count from the main
    source, ``E[max]``, is taken with independent Poisson counts of mean ``n_y / (C - 1)``
    (``sum_t 1 - F(t - 1)^(C - 1)`` with ``F`` their CDF). With few flips per source the main source
    holds far more than ``1 / (C - 1)`` of them by chance alone, and this is the yardstick.

    Args:
        joint: ``(C, C)`` calibrated confident joint (:func:`confident_joint`).

    Returns:
        ``sum_y E[max_y] / sum_y n_y`` in ``[0, 1]``; 0 when no wrong label is estimated.
    """
    off = _off_diagonal(joint)
    sources = off.shape[0] - 1
    flips = off.sum(axis=1)
    expected_max = np.zeros_like(flips)
    for y, n in enumerate(flips):
        if n <= 0:
            continue
        if sources == 1:  # two classes: every flip comes from the one other class
            expected_max[y] = n
            continue
        rate = n / sources
        top = int(np.ceil(n))  # the main source never holds more than all of them
        counts = np.arange(top)
        log_pmf = -rate + counts * np.log(rate) - np.cumsum(np.log(np.maximum(counts, 1)))
        below = np.minimum(np.cumsum(np.exp(log_pmf)), 1.0)  # F(t - 1) for t = 1 .. top
        expected_max[y] = float(np.sum(1.0 - below ** sources))
    total = flips.sum()
    return float(min(expected_max.sum() / total, 1.0)) if total > 0 else 0.0


def flip_asymmetry(joint: np.ndarray) -> float:
    """How one-way the estimated flips from each class's main source are.

    A model's own confusion between two classes runs both ways (some of each class look like the
    other), and the joint counts it as flips in both directions; labels flipped from one class to
    another by a noise process add flips in one direction only.

    Args:
        joint: ``(C, C)`` calibrated confident joint (:func:`confident_joint`).

    Returns:
        ``sum_y (J[y, s_y] - J[s_y, y]) / sum_y J[y, s_y]`` with ``s_y`` the main source of class
        ``y`` (``argmax_{j != y} J[y, j]``): 1 when no flip goes back, near 0 when as many go back
        as come, negative when more go back; 0 when no wrong label is estimated.
    """
    _, forward, backward = _main_flips(joint)
    total = forward.sum()
    return float((forward - backward).sum() / total) if total > 0 else 0.0


def _off_diagonal(joint: np.ndarray) -> np.ndarray:
    """A float64 copy of ``joint`` with its diagonal (the labels estimated right) set to 0."""
    off = np.asarray(joint, dtype=np.float64).copy()
    np.fill_diagonal(off, 0.0)
    return off


def _main_flips(joint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(off, forward, backward)``: the joint off its diagonal, and per class ``y`` the flips from
    its main source ``s_y`` (``J[y, s_y]``) and those going back (``J[s_y, y]``)."""
    off = _off_diagonal(joint)
    classes = np.arange(off.shape[0])
    source = off.argmax(axis=1)
    return off, off[classes, source], off[source, classes]


def bayes_wrong_probability(
    seg: Segments, q: np.ndarray, given: np.ndarray, joint: np.ndarray, pseudo_count: float = PSEUDO_COUNT
) -> tuple[np.ndarray, np.ndarray]:
    """The probability that each given label is wrong under the noise model ``joint`` implies.

    With ``P(y | j) = (J[y, j] + a) / sum_y' (J[y', j] + a)`` and the posterior ``q`` as the true
    class's distribution, ``P(label right) = q_y P(y | y) / sum_j q_j P(y | j)``.

    Args:
        seg: the posterior's segments (each row's classes).
        q: ``(S,)`` the posterior per segment.
        given: ``(N,)`` given labels.
        joint: ``(C, C)`` the calibrated confident joint ``J`` (:func:`confident_joint`).
        pseudo_count: ``a`` (> 0).

    Returns:
        ``(p_wrong, likely)``: ``(N,)`` float in ``[0, 1]`` (0 where the posterior is all zero), and
        ``(N,)`` int64, the most probable true class other than the given label under the same rule
        (the given label where no other class has posterior mass).
    """
    cells = joint + pseudo_count
    given_if_true = cells / cells.sum(axis=0, keepdims=True)  # [y, j] = P(label y | true class j)
    likelihood = q * given_if_true[given[seg.rows], seg.classes]
    total = np.add.reduceat(likelihood, seg.row_start)
    right = seg.at(likelihood, given)
    p_wrong = np.where(total > 0, 1.0 - right / np.where(total > 0, total, 1.0), 0.0)
    other = np.where(seg.classes == given[seg.rows], -np.inf, likelihood)
    likely = np.where(seg.row_max(other) > 0, seg.row_argmax(other), given)
    return np.clip(p_wrong, 0.0, 1.0), likely.astype(np.int64)


def confident_labels(
    posterior: np.ndarray | SparseProbs,
    given_labels: np.ndarray,
    *,
    num_classes: int | None = None,
    seen: np.ndarray | None = None,
) -> np.ndarray:
    """Each sample's most probable class among those it is confidently in (thresholds from the
    ``seen`` samples), as confident learning counts it.

    Args:
        posterior: ``(N, C)`` per-sample class probabilities, or as
            :class:`~fld_train.sparse.SparseProbs`.
        given_labels: ``(N,)`` the labels being judged (they set the thresholds).
        num_classes: C; needed only when ``posterior`` is sparse.
        seen: ``(N,)`` bool, the samples the thresholds are computed from (default all).

    Returns:
        ``(N,)`` int64 class, or ``-1`` where a sample reaches no class's threshold.
    """
    seg, q, _, _, thresholds = _prepare(posterior, given_labels, num_classes, seen)
    return confident_classes(seg, q, thresholds)


def estimate_joint(
    posterior: np.ndarray | SparseProbs,
    given_labels: np.ndarray,
    *,
    num_classes: int | None = None,
    seen: np.ndarray | None = None,
) -> np.ndarray:
    """Confident learning's calibrated confident joint of a posterior.

    Args:
        posterior: ``(N, C)`` per-sample class probabilities (for example the check's combined
            posterior), or as :class:`~fld_train.sparse.SparseProbs`.
        given_labels: ``(N,)`` the labels being judged.
        num_classes: C; needed only when ``posterior`` is sparse.
        seen: ``(N,)`` bool, the samples to count (default all).

    Returns:
        ``(C, C)``: ``[y, j]`` estimates how many samples labelled ``y`` belong to class ``j``.
    """
    return confident_joint(*_prepare(posterior, given_labels, num_classes, seen))


def wrong_label_probability(
    posterior: np.ndarray | SparseProbs,
    given_labels: np.ndarray,
    *,
    num_classes: int | None = None,
    seen: np.ndarray | None = None,
    pseudo_count: float = PSEUDO_COUNT,
) -> tuple[np.ndarray, np.ndarray]:
    """The probability that each given label is wrong under a class-conditional noise model
    estimated from the same posterior (:func:`estimate_joint`, then Bayes' rule).

    The values rank: on pair-flip noise far better than the posterior's margin, on symmetric and
    instance-dependent noise worse (docs/benchmarks.md). They are not calibrated, because the
    posterior they start from was fitted to the noisy labels: do not threshold them at one half.

    Args:
        posterior: ``(N, C)`` per-sample class probabilities, or as
            :class:`~fld_train.sparse.SparseProbs`.
        given_labels: ``(N,)`` the labels being judged.
        num_classes: C; needed only when ``posterior`` is sparse.
        seen: ``(N,)`` bool, the samples the noise model is estimated from (default all).
        pseudo_count: added to every cell of the joint (> 0).

    Returns:
        ``(p_wrong, likely)``: ``(N,)`` float in ``[0, 1]``, and ``(N,)`` int64, the most probable
        true class other than the given label.
    """
    pseudo_count = check_positive("pseudo_count", pseudo_count,
                                  hint="It is added to every cell of the estimated joint, e.g. 1.0.")
    seg, q, given, seen, thresholds = _prepare(posterior, given_labels, num_classes, seen)
    return bayes_wrong_probability(seg, q, given, confident_joint(seg, q, given, seen, thresholds), pseudo_count)


def _prepare(
    posterior: np.ndarray | SparseProbs, given_labels: np.ndarray, num_classes: int | None, seen: np.ndarray | None
) -> tuple[Segments, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate, then ``(segments, posterior per segment, given labels, seen, class thresholds)``."""
    if isinstance(posterior, SparseProbs):
        if num_classes is None:
            raise ValueError("`num_classes` is required when `posterior` is a SparseProbs.")
        c = check_int("num_classes", num_classes, minimum=2)
        n = posterior.num_rows
        sparse = posterior.check("posterior", n, c)
    else:
        arr = np.asarray(posterior, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"`posterior` must be an (N, C) array with C >= 2, got shape {arr.shape}.")
        n, c = arr.shape
        if num_classes is not None and check_int("num_classes", num_classes, minimum=2) != c:
            raise ValueError(f"`posterior` has {c} columns but `num_classes` is {num_classes}.")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError("`posterior` must hold finite, non-negative probabilities.")
        sparse = SparseProbs.from_dense(arr)
    given = check_labels("given_labels", given_labels, num_classes=c, length=n)
    mask = check_mask("seen", seen, n, default=True)
    classes = np.concatenate([given[:, None], sparse.classes], axis=1)
    channels = np.zeros((1, n, classes.shape[1]))
    channels[0, :, 1:] = sparse.values
    seg = Segments.merge(classes, channels)
    q = seg.values[0]
    return seg, q, given, mask, per_class_thresholds(seg.at(q, given), given, mask, c)
