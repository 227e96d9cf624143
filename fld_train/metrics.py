"""Detection metrics against a known noise mask (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionMetrics:
    """Precision, recall and F1 of ``flagged`` and AUROC of ``scores`` against the true noise mask."""

    precision: float
    recall: float
    f1: float
    auroc: float
    flagged: int
    noisy: int


def _as_mask(name: str, values: np.ndarray, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise ValueError(f"`{name}` must be a 1-D array of length {n}, got shape {arr.shape}.")
    return arr.astype(bool)


def precision_recall_f1(flagged: np.ndarray, noise_mask: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``(N,)`` bool ``flagged`` against ``(N,)`` bool ``noise_mask``.

    An empty prediction has precision 1; an empty truth has recall 1 (nothing was missed).
    """
    truth = _as_mask("noise_mask", noise_mask)
    pred = _as_mask("flagged", flagged, truth.size)
    tp = float(np.sum(pred & truth))
    precision = tp / pred.sum() if pred.any() else 1.0
    recall = tp / truth.sum() if truth.any() else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def auroc(scores: np.ndarray, noise_mask: np.ndarray) -> float:
    """Area under the ROC curve of ``(N,)`` ``scores`` for ``(N,)`` bool ``noise_mask`` (ties averaged).

    Returns ``nan`` when the mask holds only one class.
    """
    truth = _as_mask("noise_mask", noise_mask)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != truth.shape:
        raise ValueError(f"`scores` must have shape {truth.shape}, got {s.shape}.")
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def detection_metrics(flagged: np.ndarray, scores: np.ndarray, noise_mask: np.ndarray) -> DetectionMetrics:
    """All of :class:`DetectionMetrics` in one call."""
    p, r, f1 = precision_recall_f1(flagged, noise_mask)
    truth = np.asarray(noise_mask, dtype=bool)
    return DetectionMetrics(p, r, f1, auroc(scores, truth), int(np.sum(flagged)), int(truth.sum()))


def correction_accuracy(
    changed: np.ndarray, new_labels: np.ndarray, true_labels: np.ndarray
) -> float:
    """Share of ``changed`` samples whose ``new_labels`` equal ``true_labels`` (``nan`` if none changed)."""
    changed = np.asarray(changed, dtype=bool)
    if not changed.any():
        return float("nan")
    return float(np.mean(np.asarray(new_labels)[changed] == np.asarray(true_labels)[changed]))
