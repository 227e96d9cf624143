"""``LabelReport``: the per-sample verdict of a run, as numpy arrays indexed by dataset index."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fld_train._io import atomic_write
from fld_train.metrics import DetectionMetrics, correction_accuracy, detection_metrics
from fld_train.review import Review, human_agreement, queue_order, write_queue
from fld_train.scoring import DECISION_NAMES, Evaluation, is_diffuse

#: Signals shown in the ``reason`` column, with their labels.
_REASON_SIGNALS = (("model_given_prob", "model p(given)"), ("knn_agreement", "kNN agreement"),
                   ("model_suggested_prob", "model p(suggested)"), ("knn_suggested_share", "kNN share(suggested)"))


@dataclass(frozen=True)
class LabelReport:
    """Per-sample verdict of the latest check.

    ``scores`` and ``flagged`` always judge the *given* (original) label, whatever the action, so a
    ``"relabel"`` run's report is comparable with a ``"flag"`` run's and with a known noise mask.

    Attributes:
        given_labels: ``(N,)`` int64 original labels (-1 for a sample never seen whose label was
            not declared: possible only without a ``RelabeledDataset``).
        current_labels: ``(N,)`` int64 labels training uses now.
        suggested_labels: ``(N,)`` int64 most likely true label.
        scores: ``(N,)`` float64 in ``[0, 1]``; higher = the given label is more likely wrong.
        flagged: ``(N,)`` bool, the given label is judged wrong.
        decisions: ``(N,)`` str, one of ``keep``, ``relabel``, ``downweight``, ``review``, ``unseen``,
            ``reviewed`` (a human decided; automatic checks leave it alone).
        weights: ``(N,)`` float32 training weights.
        signals: name -> ``(N,)`` array of each signal behind the score.
        epoch: epoch of the check (-1 if none).
        reviews: the reviewer decisions applied so far.
        num_classes: number of classes C (0: one more than the largest label seen).
        knn_k: neighbours the check's kNN vote counted (0: not known).
        flip_concentration: share of the check's estimated wrong labels that come from their given
            class's main source (:func:`fld_train.confident.flip_concentration`).
        flip_asymmetry: how one-way those flips run (:func:`fld_train.confident.flip_asymmetry`).
        chance_concentration: what that share would be by chance were the flips from all other
            classes alike (:func:`fld_train.confident.chance_flip_concentration`; 0: not known).
        noise_model: the scores and flags are the class-conditional noise model's, not the margin's
            (``ranking``; :func:`fld_train.scoring.evaluate`).
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
    reviews: tuple[Review, ...] = ()
    num_classes: int = 0
    knn_k: int = 0
    flip_concentration: float = 0.0
    flip_asymmetry: float = 0.0
    noise_model: bool = False
    chance_concentration: float = 0.0

    @property
    def diffuse_flips(self) -> bool:
        """The check's estimated wrong labels come from all other classes alike
        (:attr:`fld_train.scoring.Evaluation.diffuse_flips`): at two checks in a row, what lets the
        default ``uncertain_action="auto"`` down-weight."""
        return is_diffuse(self.flip_concentration, self.chance_concentration)

    @classmethod
    def from_evaluation(
        cls, evaluation: Evaluation, given_labels: np.ndarray, current_labels: np.ndarray, epoch: int,
        *, reviews: Sequence[Review] = (), num_classes: int = 0,
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
            reviews=tuple(reviews),
            num_classes=int(num_classes),
            knn_k=int(evaluation.knn_k),
            flip_concentration=float(evaluation.flip_concentration),
            flip_asymmetry=float(evaluation.flip_asymmetry),
            noise_model=bool(evaluation.noise_model),
            chance_concentration=float(evaluation.chance_concentration),
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> LabelReport:
        """Read a report written by :meth:`to_csv` (reviews and the check's epoch are not in the file)."""
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        required = ("index", "given_label", "current_label", "suggested_label", "score", "flagged",
                    "decision", "weight")
        if not rows:
            raise ValueError(f"{path} holds no rows; is it a label report written by to_csv?")
        missing = [c for c in required if c not in rows[0]]
        if missing:
            raise ValueError(f"{path} is not a label report: missing column(s) {', '.join(missing)}.")
        signal_names = [c for c in rows[0] if c not in (*required, "reason")]

        def col(name: str, dtype: Any) -> np.ndarray:
            return np.array([r[name] for r in rows]).astype(dtype)

        order = np.argsort(col("index", np.int64))
        return cls(
            given_labels=col("given_label", np.int64)[order],
            current_labels=col("current_label", np.int64)[order],
            suggested_labels=col("suggested_label", np.int64)[order],
            scores=col("score", np.float64)[order],
            flagged=col("flagged", np.int64)[order].astype(bool),
            decisions=np.array([r["decision"] for r in rows], dtype=object)[order],
            weights=col("weight", np.float32)[order],
            signals={name: col(name, np.float64)[order] for name in signal_names},
        )

    def __len__(self) -> int:
        return int(self.given_labels.size)

    @property
    def classes(self) -> int:
        """Number of classes C."""
        if self.num_classes:
            return self.num_classes
        return int(max(self.given_labels.max(initial=-1), self.suggested_labels.max(initial=-1)) + 1)

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

    def top_flagged(self, k: int) -> np.ndarray:
        """Indices of the ``k`` highest-scored flagged samples, highest first."""
        idx = np.flatnonzero(self.flagged)
        return idx[np.argsort(-self.scores[idx], kind="stable")][:k]

    def per_class(self) -> dict[str, np.ndarray]:
        """Per given class: ``samples``, ``flagged``, ``relabeled``, ``downweighted`` counts and
        ``mean_score``, each a ``(C,)`` array."""
        c = self.classes
        g = self.given_labels
        known = g >= 0  # -1: a sample never seen whose label was not declared

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(g[mask & known], minlength=c)

        samples = count(known)
        return {
            "samples": samples,
            "flagged": count(self.flagged),
            "relabeled": count(self.current_labels != g),
            "downweighted": count(self.weights < 1),
            "mean_score": np.divide(np.bincount(g[known], weights=self.scores[known], minlength=c),
                                    samples, out=np.zeros(c), where=samples > 0),
        }

    def label_transitions(self) -> np.ndarray:
        """``(C, C)`` counts of flagged samples by given label (rows) and suggested label (columns):
        the estimated label-transition matrix, off its diagonal."""
        c = self.classes
        f = self.flagged
        return np.bincount(self.given_labels[f] * c + self.suggested_labels[f],
                           minlength=c * c).reshape(c, c)

    def human_agreement(self) -> dict[str, Any]:
        """Share of automatic corrections that reviewers confirmed (see
        :func:`fld_train.review.human_agreement`)."""
        return human_agreement(self.reviews, self.given_labels, self.classes)

    def review_queue(
        self,
        out_dir: str | os.PathLike[str],
        *,
        max_items: int | None = None,
        paths: Sequence[str] | None = None,
        images: Callable[[int], np.ndarray] | None = None,
    ) -> tuple[Path, Path]:
        """Write the samples a human should look at as ``review_queue.csv`` and ``.jsonl``.

        Flagged samples no automatic decision resolved come first, most likely wrong first; then
        automatic corrections, least certain first (:func:`fld_train.review.queue_order`). Samples
        already reviewed are left out. By default the queue holds indices, labels, scores and reasons
        only; ``paths`` (the dataset's file paths by index) and ``images`` (index -> uint8 image,
        written as thumbnails) add raw-data references only when passed.

        Returns:
            The CSV and JSONL paths.
        """
        reviewed = np.zeros(len(self), dtype=bool)
        reviewed[[r.index for r in self.reviews]] = True
        order = queue_order(self.scores, self.decisions, self.flagged, reviewed)
        if max_items is not None:
            order = order[:max_items]
        reasons = self.reasons()
        rows = [{
            "rank": rank, "index": int(i), "given_label": int(self.given_labels[i]),
            "current_label": int(self.current_labels[i]), "suggested_label": int(self.suggested_labels[i]),
            "score": round(float(self.scores[i]), 6), "decision": str(self.decisions[i]),
            "reason": reasons[i], "review_decision": "", "review_label": "",
        } for rank, i in enumerate(order, start=1)]
        return write_queue(out_dir, rows, paths=paths, images=images)

    def format_summary(self, *, top: int = 10) -> str:
        """A terminal summary: counts, a per-class table and the ``top`` flagged samples."""
        n = max(len(self), 1)
        counts = {name: int(np.sum(self.decisions == name))
                  for name in ("relabel", "downweight", "review", "reviewed")}
        unseen = int(np.sum(self.decisions == "unseen"))
        lines = [
            f"{len(self)} samples{f' ({unseen} not seen in training yet)' if unseen else ''}, "
            f"{int(self.flagged.sum())} flagged ({self.flagged.sum() / n:.1%}): "
            + ", ".join(f"{v} {k}" for k, v in counts.items()),
            "",
            f"{'class':>5} {'samples':>8} {'flagged':>8} {'relabeled':>10} {'downweighted':>13} {'mean score':>11}",
        ]
        table = self.per_class()
        for c in range(self.classes):
            lines.append(f"{c:>5} {table['samples'][c]:>8} {table['flagged'][c]:>8} "
                         f"{table['relabeled'][c]:>10} {table['downweighted'][c]:>13} "
                         f"{table['mean_score'][c]:>11.3f}")
        idx = self.top_flagged(top)
        lines += ["", f"top {idx.size} flagged", (f"{'index':>7}  {'given->suggested':<16} {'score':>6}  "
                                                    f"{'decision':<10} reason")]
        reasons = self.reasons()
        for i in idx:
            pair = f"{self.given_labels[i]}->{self.suggested_labels[i]}"
            lines.append(f"{i:>7}  {pair:<16} {self.scores[i]:>6.3f}  {self.decisions[i]:<10} {reasons[i]}")
        return "\n".join(lines)

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
