"""Per-sample running statistics of a training run, indexed by dataset index.

The store is framework-free: it takes numpy arrays (logits, embeddings, labels, indices) and keeps
N-sized arrays of running sums, so the training-dynamics signals (mean given-label probability,
AUM margin, first-learned epoch, forgetting events) and the latest embedding of every sample are
available at each check. Updates are vectorised; a sample counts at most once per epoch, so the
duplicates that ``DistributedSampler`` adds to even out ranks are never double-counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fld_train._validation import check_int, check_labels

_ARRAYS = (
    "given_labels",
    "seen_epochs",
    "last_epoch",
    "first_epoch",
    "prob_sum",
    "prob_sq_sum",
    "margin_sum",
    "class_prob_sum",
    "first_learned_epoch",
    "forgetting_events",
    "correct_last",
    "embeddings",
)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` with shape ``(B, C)``, computed in float64 for stability."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class SampleStore:
    """N-sized arrays of per-sample statistics, updated batch by batch.

    Args:
        num_samples: dataset size N; sample ids are ``0 .. N-1``.
        num_classes: number of classes C.

    Attributes (all indexed by sample id, length N):
        given_labels: ``(N,)`` int64 label the statistics judge (the original one), -1 if unseen.
        seen_epochs: ``(N,)`` number of epochs in which the sample was observed.
        last_epoch: ``(N,)`` last epoch observed, -1 if never.
        first_epoch: ``(N,)`` first epoch observed, -1 if never.
        prob_sum, prob_sq_sum: ``(N,)`` sums of the given-label softmax probability and its square.
        margin_sum: ``(N,)`` sum of the AUM margin, given logit minus the largest other logit.
        class_prob_sum: ``(N, C)`` float32 sum of the softmax vectors.
        first_learned_epoch: ``(N,)`` first epoch whose prediction was the given label, -1 if never.
        forgetting_events: ``(N,)`` number of correct -> incorrect transitions between epochs.
        correct_last: ``(N,)`` bool, prediction was the given label at the last observation.
        embeddings: ``(N, D)`` float16 latest penultimate-layer embedding, L2-normalised (``None``
            until the first update).
        nonfinite_rows: rows skipped so far because their logits or embedding held NaN or inf.
    """

    def __init__(self, num_samples: int, num_classes: int) -> None:
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        n, c = self.num_samples, self.num_classes
        self.given_labels = np.full(n, -1, dtype=np.int64)
        self.seen_epochs = np.zeros(n, dtype=np.int32)
        self.last_epoch = np.full(n, -1, dtype=np.int32)
        self.first_epoch = np.full(n, -1, dtype=np.int32)
        self.prob_sum = np.zeros(n, dtype=np.float64)
        self.prob_sq_sum = np.zeros(n, dtype=np.float64)
        self.margin_sum = np.zeros(n, dtype=np.float64)
        self.class_prob_sum = np.zeros((n, c), dtype=np.float32)
        self.first_learned_epoch = np.full(n, -1, dtype=np.int32)
        self.forgetting_events = np.zeros(n, dtype=np.int32)
        self.correct_last = np.zeros(n, dtype=bool)
        self.embeddings: np.ndarray | None = None
        self.nonfinite_rows = 0

    # ------------------------------------------------------------------ updates
    def set_given_labels(self, labels: Any) -> None:
        """Declare the original labels of all N samples (the labels every score judges)."""
        self.given_labels[:] = check_labels(
            "labels", labels, num_classes=self.num_classes, length=self.num_samples
        )

    def update(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        logits: np.ndarray,
        embeddings: np.ndarray | None,
        epoch: int,
    ) -> int:
        """Add one batch of observations made during ``epoch``.

        Args:
            indices: ``(B,)`` sample ids in ``[0, N)``.
            labels: ``(B,)`` labels the batch carried; they fill ``given_labels`` only for samples
                whose given label is still unknown (a relabeled sample keeps its original label).
            logits: ``(B, C)`` classifier outputs.
            embeddings: ``(B, D)`` penultimate-layer features, or ``None``.
            epoch: the current epoch (0-based).

        Returns:
            The number of samples recorded. Skipped: duplicates within the batch, samples already
            recorded in this epoch, and rows whose logits or embedding hold NaN or inf (counted in
            :attr:`nonfinite_rows`; nothing of them is written).
        """
        indices = np.asarray(indices)
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"`logits` must have shape (B, num_classes={self.num_classes}), got {logits.shape}. "
                "Does the head's output size match `num_classes`?"
            )
        indices = check_labels("indices", indices, num_classes=None, length=logits.shape[0])
        bad = np.flatnonzero((indices < 0) | (indices >= self.num_samples))
        if bad.size:
            raise IndexError(
                f"sample index {int(indices[bad[0]])} is outside [0, num_samples={self.num_samples}); "
                "the indices must be the dataset positions that RelabeledDataset returns."
            )
        labels = check_labels("labels", labels, num_classes=self.num_classes, length=len(indices))
        emb = None if embeddings is None else np.asarray(embeddings)
        if emb is not None:
            if emb.ndim != 2 or emb.shape[0] != len(indices):
                raise ValueError(f"`embeddings` must have shape (B={len(indices)}, D), got {emb.shape}.")
            if self.embeddings is not None and emb.shape[1] != self.embeddings.shape[1]:
                raise ValueError(
                    f"embedding size changed from {self.embeddings.shape[1]} to {emb.shape[1]}."
                )

        finite = np.isfinite(logits).all(axis=1)
        if emb is not None:
            finite &= np.isfinite(emb).all(axis=1)
        self.nonfinite_rows += int((~finite).sum())
        # one observation per sample and epoch: first finite occurrence in the batch, not yet seen
        # in this epoch
        rows_ok = np.flatnonzero(finite)
        _, first = np.unique(indices[rows_ok], return_index=True)
        first = rows_ok[first]
        keep = first[self.last_epoch[indices[first]] != epoch]
        if keep.size == 0:
            return 0
        idx = indices[keep]
        unknown = self.given_labels[idx] < 0
        self.given_labels[idx[unknown]] = labels[keep][unknown]
        given = self.given_labels[idx]

        logit = logits[keep].astype(np.float64)
        prob = softmax(logit)
        rows = np.arange(idx.size)
        p_given = prob[rows, given]
        other = logit.copy()
        other[rows, given] = -np.inf
        margin = logit[rows, given] - other.max(axis=1)
        correct = prob.argmax(axis=1) == given

        self.prob_sum[idx] += p_given
        self.prob_sq_sum[idx] += p_given * p_given
        self.margin_sum[idx] += margin
        self.class_prob_sum[idx] += prob.astype(np.float32)
        was_seen = self.seen_epochs[idx] > 0
        self.forgetting_events[idx] += (was_seen & self.correct_last[idx] & ~correct).astype(np.int32)
        self.correct_last[idx] = correct
        newly = correct & (self.first_learned_epoch[idx] < 0)
        self.first_learned_epoch[idx[newly]] = epoch
        self.first_epoch[idx[self.seen_epochs[idx] == 0]] = epoch
        self.seen_epochs[idx] += 1
        self.last_epoch[idx] = epoch

        if emb is not None:
            if self.embeddings is None:
                self.embeddings = np.zeros((self.num_samples, emb.shape[1]), dtype=np.float16)
            # L2-normalised before the float16 cast: no overflow, and cosine kNN needs the direction only
            e = emb[keep].astype(np.float32)
            e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            self.embeddings[idx] = e.astype(np.float16)
        return int(idx.size)

    # ------------------------------------------------------------------ reads
    @property
    def seen(self) -> np.ndarray:
        """``(N,)`` bool, the sample was observed at least once."""
        return self.seen_epochs > 0

    def _per_epoch(self, total: np.ndarray) -> np.ndarray:
        count = np.maximum(self.seen_epochs, 1).reshape((-1,) + (1,) * (total.ndim - 1))
        return total / count

    def mean_given_prob(self) -> np.ndarray:
        """``(N,)`` mean softmax probability of the given label over the observed epochs."""
        return self._per_epoch(self.prob_sum)

    def given_prob_variability(self) -> np.ndarray:
        """``(N,)`` standard deviation of the given-label probability over epochs (data maps)."""
        mean = self.mean_given_prob()
        return np.sqrt(np.maximum(self._per_epoch(self.prob_sq_sum) - mean * mean, 0.0))

    def mean_margin(self) -> np.ndarray:
        """``(N,)`` area under the margin (AUM): mean of given logit minus largest other logit."""
        return self._per_epoch(self.margin_sum)

    def mean_class_probs(self) -> np.ndarray:
        """``(N, C)`` mean softmax vector over the observed epochs (zeros for unseen samples)."""
        return self._per_epoch(self.class_prob_sum.astype(np.float64))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain values (ints and numpy arrays) that :meth:`load_state_dict` restores."""
        state: dict[str, Any] = {"num_samples": self.num_samples, "num_classes": self.num_classes,
                                 "nonfinite_rows": self.nonfinite_rows}
        state.update({name: getattr(self, name) for name in _ARRAYS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; arrays missing from ``state`` keep their values."""
        n, c = state.get("num_samples", self.num_samples), state.get("num_classes", self.num_classes)
        if (n, c) != (self.num_samples, self.num_classes):
            raise ValueError(
                f"checkpointed store has num_samples={n}, num_classes={c}; this run has "
                f"num_samples={self.num_samples}, num_classes={self.num_classes}. "
                "Resume with the same dataset and `num_classes`."
            )
        self.nonfinite_rows = int(state.get("nonfinite_rows", self.nonfinite_rows))
        for name in _ARRAYS:
            if name in state and state[name] is not None:
                value = np.asarray(state[name])
                current = getattr(self, name)
                setattr(self, name, value.astype(current.dtype if current is not None else value.dtype))
