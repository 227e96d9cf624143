"""``LabelReport``: the per-sample verdict of a run, as numpy arrays indexed by dataset index."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np

from fld_train._io import atomic_write
from fld_train.metrics import DetectionMetrics, correction_accuracy, detection_metrics
from fld_train.scoring import DECISION_NAMES, Evaluation

#: Signals shown in the ``reason`` column, with their labels.
_REASON_SIGNALS = (("model_given_prob", "model p(given)"), ("knn_agreement", "kNN agreement"))


@dataclass(frozen=True)
class LabelReport:
    """Per-sample verdict of the latest check.

    ``scores`` and ``flagged`` always judge the *given* (original) label, whatever the action, so a
    ``"relabel"`` run's report is comparable with a ``"flag"`` run's and with a known noise mask.

    Attributes:
        given_labels: ``(N,)`` int64 original labels.
        current_labels: ``(N,)`` int64 labels training uses now.
        suggested_labels: ``(N,)`` int64 most likely true label.
        scores: ``(N,)`` float64 in ``[0, 1]``; higher = the given label is more likely wrong.
        flagged: ``(N,)`` bool, the given label is judged wrong.
        decisions: ``(N,)`` str, one of ``keep``, ``relabel``, ``downweight``, ``review``, ``unseen``.
        weights: ``(N,)`` float32 training weights.
        signals: name -> ``(N,)`` array of each signal behind the score.
        epoch: epoch of the check (-1 if none).
    """

    given_labels: np.ndarray
    current_labels: np.ndarray
    suggested_labels: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    decisions: np.ndarray
    weights: np.ndarray
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    epoch: int = -1

    @classmethod
    def from_evaluation(
        cls, evaluation: Evaluation, given_labels: np.ndarray, current_labels: np.ndarray, epoch: int
    ) -> LabelReport:
        """Build a report from a check's :class:`~fld_train.scoring.Evaluation`."""
        return cls(
            given_labels=np.asarray(given_labels, dtype=np.int64).copy(),
            current_labels=np.asarray(current_labels, dtype=np.int64).copy(),
            suggested_labels=evaluation.suggested_labels.copy(),
            scores=evaluation.scores.astype(np.float64),
            flagged=evaluation.flagged.copy(),
            decisions=np.asarray(DECISION_NAMES, dtype=object)[evaluation.decisions],
            weights=evaluation.weights.copy(),
            signals={k: np.asarray(v).copy() for k, v in evaluation.signals.items()},
            epoch=int(epoch),
        )

    def __len__(self) -> int:
        return int(self.given_labels.size)

    # ------------------------------------------------------------------ views
    def reasons(self) -> list[str]:
        """One human-readable reason per sample (empty for samples that are not flagged)."""
        out = [""] * len(self)
        for i in np.flatnonzero(self.flagged):
            parts = [f"{label}={self.signals[key][i]:.2f}" for key, label in _REASON_SIGNALS
                     if key in self.signals]
            parts.append(f"suggested {self.suggested_labels[i]} over given {self.given_labels[i]}")
            out[i] = "; ".join(parts)
        return out

    def summary(self) -> dict[str, float]:
        """Counts and fractions of flagged, relabeled, down-weighted and review samples."""
        n = max(len(self), 1)
        out: dict[str, float] = {"samples": float(len(self)), "flagged": float(self.flagged.sum())}
        for name in ("relabel", "downweight", "review"):
            out[name] = float(np.sum(self.decisions == name))
        for key in ("flagged", "relabel", "downweight", "review"):
            out[f"{key}_fraction"] = out[key] / n
        return out

    def detection(self, noise_mask: np.ndarray) -> DetectionMetrics:
        """Precision, recall, F1 of ``flagged`` and AUROC of ``scores`` against a known noise mask."""
        return detection_metrics(self.flagged, self.scores, noise_mask)

    def correction_accuracy(self, true_labels: np.ndarray) -> float:
        """Share of relabeled samples whose current label is ``true_labels`` (``nan`` if none)."""
        return correction_accuracy(self.current_labels != self.given_labels, self.current_labels,
                                   true_labels)

    # ------------------------------------------------------------------ export
    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per sample: index, labels, score, flagged, decision, weight, signals, reason.

        The file is written atomically: readers see the previous file or the complete new one.
        """
        signal_names = sorted(self.signals)
        header = ["index", "given_label", "current_label", "suggested_label", "score", "flagged",
                  "decision", "weight", *signal_names, "reason"]
        reasons = self.reasons()
        with atomic_write(path) as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for i in range(len(self)):
                writer.writerow([
                    i, int(self.given_labels[i]), int(self.current_labels[i]),
                    int(self.suggested_labels[i]), f"{self.scores[i]:.6f}", int(self.flagged[i]),
                    self.decisions[i], f"{self.weights[i]:.6f}",
                    *(f"{float(self.signals[k][i]):.6f}" for k in signal_names), reasons[i],
                ])
