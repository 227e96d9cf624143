"""Per-sample running statistics of a training run, indexed by dataset index.

The store is framework-free: it takes numpy arrays and keeps N-sized arrays of running sums, so the
training-dynamics signals (mean given-label probability, AUM margin, first-learned epoch, forgetting
events), the classes the model found most probable and the latest embedding of every sample are
available at each check. Updates are vectorised; a sample counts at most once per epoch, so the
duplicates that ``DistributedSampler`` adds to even out ranks are never double-counted.

It is sized for ImageNet: no ``N x C`` array is kept (the mean softmax is kept for each sample's
``top_k`` most probable classes), embeddings are float16 and can be projected to ``embedding_dim``
dimensions, and the large arrays can live in memory-mapped files (``memmap_dir``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fld_train._validation import check_int, check_labels
from fld_train.sparse import SparseProbs

_ARRAYS = (
    "given_labels",
    "seen_epochs",
    "last_epoch",
    "first_epoch",
    "prob_sum",
    "prob_sq_sum",
    "margin_sum",
    "top_classes",
    "top_prob_sum",
    "first_learned_epoch",
    "forgetting_events",
    "correct_last",
    "embeddings",
    "projection",
)
#: Bytes per sample of the arrays that do not grow with C or D (see :meth:`SampleStore.estimate_nbytes`).
_FIXED_BYTES = 8 + 4 + 4 + 4 + 8 + 8 + 8 + 4 + 4 + 1


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` with shape ``(B, C)``, computed in float64 for stability."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def projection_matrix(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """``(in_dim, out_dim)`` float32 Gaussian random projection; it preserves cosine similarities
    approximately (Johnson-Lindenstrauss), which is all the kNN check needs."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((in_dim, out_dim)) / np.sqrt(out_dim)).astype(np.float32)


@dataclass(frozen=True)
class Observations:
    """One batch of observations, summarised (the logits themselves are not kept).

    Attributes:
        indices: ``(B,)`` sample ids.
        labels: ``(B,)`` labels the batch carried.
        given_prob: ``(B,)`` softmax probability of the sample's given label.
        margin: ``(B,)`` given logit minus the largest other logit (AUM).
        correct: ``(B,)`` bool, the prediction was the given label.
        top_classes: ``(B, K)`` the K most probable classes.
        top_probs: ``(B, K)`` their probabilities.
        embeddings: ``(B, D)`` penultimate-layer features, or ``None``.
        finite: ``(B,)`` bool, the row's logits and embedding were finite (others are skipped).
    """

    indices: np.ndarray
    labels: np.ndarray
    given_prob: np.ndarray
    margin: np.ndarray
    correct: np.ndarray
    top_classes: np.ndarray
    top_probs: np.ndarray
    embeddings: np.ndarray | None
    finite: np.ndarray


def summarise_logits(
    indices: np.ndarray, labels: np.ndarray, given: np.ndarray, logits: np.ndarray,
    embeddings: np.ndarray | None, top_k: int,
) -> Observations:
    """Summarise a batch of ``(B, C)`` logits against the ``(B,)`` ``given`` labels.

    The torch twin, run on the model's device, is :func:`fld_train.capture.summarise`.
    """
    b, c = logits.shape
    finite = np.isfinite(logits).all(axis=1)
    if embeddings is not None:
        finite &= np.isfinite(embeddings).all(axis=1)
    logit = np.where(finite[:, None], logits, 0.0).astype(np.float64)
    prob = softmax(logit)
    rows = np.arange(b)
    other = logit.copy()
    other[rows, given] = -np.inf
    k = min(top_k, c)
    top = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return Observations(
        indices=indices, labels=labels, given_prob=prob[rows, given],
        margin=logit[rows, given] - other.max(axis=1), correct=prob.argmax(axis=1) == given,
        top_classes=top, top_probs=np.take_along_axis(prob, top, axis=1),
        embeddings=embeddings, finite=finite,
    )


class SampleStore:
    """N-sized arrays of per-sample statistics, updated batch by batch.

    Args:
        num_samples: dataset size N; sample ids are ``0 .. N-1``.
        num_classes: number of classes C.
        top_k: classes per sample whose probability sums are kept (``min(top_k, C)``; exact mean
            softmax when ``C <= top_k``). A class gathers probability in the epochs in which it is
            among the sample's ``top_k`` most probable ones.
        embedding_dim: project wider embeddings to this many dimensions (Gaussian random
            projection); ``None`` keeps them as they are.
        memmap_dir: keep the top-class and embedding arrays in ``.npy`` files in this folder
            (memory-mapped) instead of in memory.

    Attributes (all indexed by sample id, length N):
        given_labels: ``(N,)`` int64 label the statistics judge (the original one), -1 if unseen.
        seen_epochs: ``(N,)`` number of epochs in which the sample was observed.
        last_epoch: ``(N,)`` last epoch observed, -1 if never.
        first_epoch: ``(N,)`` first epoch observed, -1 if never.
        prob_sum, prob_sq_sum: ``(N,)`` sums of the given-label softmax probability and its square.
        margin_sum: ``(N,)`` sum of the AUM margin, given logit minus the largest other logit.
        top_classes: ``(N, K)`` int32 the classes with the largest probability sums, -1 if empty.
        top_prob_sum: ``(N, K)`` float32 their probability sums.
        first_learned_epoch: ``(N,)`` first epoch whose prediction was the given label, -1 if never.
        forgetting_events: ``(N,)`` number of correct -> incorrect transitions between epochs.
        correct_last: ``(N,)`` bool, prediction was the given label at the last observation.
        embeddings: ``(N, D)`` float16 latest penultimate-layer embedding, L2-normalised (``None``
            until the first update).
        projection: ``(D_in, embedding_dim)`` float32 projection in use, or ``None``.
        nonfinite_rows: rows skipped so far because their logits or embedding held NaN or inf.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        *,
        top_k: int = 10,
        embedding_dim: int | None = None,
        memmap_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.top_k = min(check_int("top_k", top_k, minimum=1), self.num_classes)
        self.embedding_dim = None if embedding_dim is None else check_int(
            "embedding_dim", embedding_dim, minimum=1, hint="Use None to keep the embeddings' own size.")
        self.memmap_dir = None if memmap_dir is None else Path(memmap_dir)
        n = self.num_samples
        self.given_labels = np.full(n, -1, dtype=np.int64)
        self.seen_epochs = np.zeros(n, dtype=np.int32)
        self.last_epoch = np.full(n, -1, dtype=np.int32)
        self.first_epoch = np.full(n, -1, dtype=np.int32)
        self.prob_sum = np.zeros(n, dtype=np.float64)
        self.prob_sq_sum = np.zeros(n, dtype=np.float64)
        self.margin_sum = np.zeros(n, dtype=np.float64)
        self.top_classes = self._allocate("top_classes", (n, self.top_k), np.int32, fill=-1)
        if self.top_k == self.num_classes:  # every class has its slot: slot j holds class j
            self.top_classes[:] = np.arange(self.num_classes, dtype=np.int32)
        self.top_prob_sum = self._allocate("top_prob_sum", (n, self.top_k), np.float32, fill=0)
        self.first_learned_epoch = np.full(n, -1, dtype=np.int32)
        self.forgetting_events = np.zeros(n, dtype=np.int32)
        self.correct_last = np.zeros(n, dtype=bool)
        self.embeddings: np.ndarray | None = None
        self.projection: np.ndarray | None = None
        self.nonfinite_rows = 0

    @staticmethod
    def estimate_nbytes(num_samples: int, num_classes: int, embedding_dim: int, *, top_k: int = 10) -> int:
        """Bytes a store of this size holds once every sample has been seen (projection excluded)."""
        per_sample = _FIXED_BYTES + min(top_k, num_classes) * (4 + 4) + embedding_dim * 2
        return int(num_samples) * per_sample

    @property
    def nbytes(self) -> int:
        """Bytes held by the store's arrays now (memory-mapped ones included)."""
        return sum(getattr(self, name).nbytes for name in _ARRAYS if getattr(self, name) is not None)

    def _allocate(self, name: str, shape: tuple[int, ...], dtype: Any, *, fill: float) -> np.ndarray:
        if self.memmap_dir is None:
            return np.full(shape, fill, dtype=dtype)
        self.memmap_dir.mkdir(parents=True, exist_ok=True)
        arr = np.lib.format.open_memmap(self.memmap_dir / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        arr[...] = fill
        return arr

    def projection_for(self, in_dim: int) -> np.ndarray | None:
        """The ``(in_dim, embedding_dim)`` projection applied to embeddings of width ``in_dim``
        (``None`` when they are kept as they are); created on first use, fixed afterwards."""
        if self.embedding_dim is None or in_dim <= self.embedding_dim:
            return None
        if self.projection is None:
            self.projection = projection_matrix(in_dim, self.embedding_dim)
        if self.projection.shape[0] != in_dim:
            raise ValueError(f"embedding size changed from {self.projection.shape[0]} to {in_dim}.")
        return self.projection

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
            The number of samples recorded (see :meth:`record`).
        """
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"`logits` must have shape (B, num_classes={self.num_classes}), got {logits.shape}. "
                "Does the head's output size match `num_classes`?"
            )
        indices, labels = self._check_ids(indices, labels, logits.shape[0])
        known = self.given_labels[indices]
        given = np.where(known >= 0, known, labels)
        emb = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        return self.record(summarise_logits(indices, labels, given, logits, emb, self.top_k), epoch)

    def _check_ids(self, indices: Any, labels: Any, length: int) -> tuple[np.ndarray, np.ndarray]:
        indices = check_labels("indices", indices, num_classes=None, length=length)
        bad = np.flatnonzero((indices < 0) | (indices >= self.num_samples))
        if bad.size:
            raise IndexError(
                f"sample index {int(indices[bad[0]])} is outside [0, num_samples={self.num_samples}); "
                "the indices must be the dataset positions that RelabeledDataset returns."
            )
        labels = check_labels("labels", labels, num_classes=None, length=length)
        bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if bad.size:
            raise ValueError(
                f"batch label {int(labels[bad[0]])} (sample index {int(indices[bad[0]])}) is outside "
                f"[0, num_classes={self.num_classes}). Check `num_classes` or the dataset's labels."
            )
        return indices, labels

    def record(self, obs: Observations, epoch: int) -> int:
        """Add summarised observations made during ``epoch``.

        Returns:
            The number of samples recorded. Skipped: repeated indices (the first finite row
            counts), samples already recorded in this epoch, and rows whose logits or embedding
            hold NaN or inf (counted in :attr:`nonfinite_rows`; nothing of them is written).
        """
        indices, labels = self._check_ids(obs.indices, obs.labels, len(obs.indices))
        emb = None if obs.embeddings is None else np.asarray(obs.embeddings)
        if emb is not None and (emb.ndim != 2 or emb.shape[0] != len(indices)):
            raise ValueError(f"`embeddings` must have shape (B={len(indices)}, D), got {emb.shape}.")
        if np.shape(obs.top_classes) != (len(indices), self.top_k):
            raise ValueError(f"`top_classes` must have shape (B, top_k={self.top_k}), got "
                             f"{np.shape(obs.top_classes)}.")
        projection = None if emb is None else self.projection_for(emb.shape[1])
        if emb is not None and self.embeddings is not None:
            width = emb.shape[1] if projection is None else projection.shape[1]
            if width != self.embeddings.shape[1]:
                raise ValueError(f"embedding size changed from {self.embeddings.shape[1]} to {width}.")

        finite = np.asarray(obs.finite, dtype=bool)
        self.nonfinite_rows += int((~finite).sum())
        # one observation per sample and epoch: first finite occurrence, not yet seen in this epoch
        rows_ok = np.flatnonzero(finite)
        _, first = np.unique(indices[rows_ok], return_index=True)
        first = rows_ok[first]
        keep = first[self.last_epoch[indices[first]] != epoch]
        if keep.size == 0:
            return 0
        idx = indices[keep]
        unknown = self.given_labels[idx] < 0
        self.given_labels[idx[unknown]] = labels[keep][unknown]

        p_given = np.asarray(obs.given_prob, dtype=np.float64)[keep]
        correct = np.asarray(obs.correct, dtype=bool)[keep]
        self.prob_sum[idx] += p_given
        self.prob_sq_sum[idx] += p_given * p_given
        self.margin_sum[idx] += np.asarray(obs.margin, dtype=np.float64)[keep]
        self._add_top(idx, np.asarray(obs.top_classes)[keep], np.asarray(obs.top_probs)[keep])
        was_seen = self.seen_epochs[idx] > 0
        self.forgetting_events[idx] += (was_seen & self.correct_last[idx] & ~correct).astype(np.int32)
        self.correct_last[idx] = correct
        newly = correct & (self.first_learned_epoch[idx] < 0)
        self.first_learned_epoch[idx[newly]] = epoch
        self.first_epoch[idx[self.seen_epochs[idx] == 0]] = epoch
        self.seen_epochs[idx] += 1
        self.last_epoch[idx] = epoch

        if emb is not None:
            e = emb[keep].astype(np.float32)
            if projection is not None:
                e = e @ projection
            if self.embeddings is None:
                self.embeddings = self._allocate("embeddings", (self.num_samples, e.shape[1]), np.float16, fill=0)
            # L2-normalised before the float16 cast: no overflow, and cosine kNN needs the direction only
            e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            self.embeddings[idx] = e.astype(np.float16)
        return int(idx.size)

    def _add_top(self, idx: np.ndarray, classes: np.ndarray, probs: np.ndarray) -> None:
        """Add this epoch's top classes to each sample's slots and keep the ``top_k`` largest sums."""
        if self.top_k == self.num_classes:  # slot j is class j: add in place, nothing to merge
            dense = np.zeros((idx.size, self.num_classes), dtype=np.float32)
            np.put_along_axis(dense, classes.astype(np.int64), probs.astype(np.float32), axis=1)
            self.top_prob_sum[idx] += dense
            return
        slots, sums = self.top_classes[idx].astype(np.int64), self.top_prob_sum[idx].astype(np.float64)
        classes = classes.astype(np.int64)
        probs = probs.astype(np.float64)
        match = slots[:, :, None] == classes[:, None, :]  # (B, K, K)
        sums += (match * probs[:, None, :]).sum(axis=2)
        fresh = ~match.any(axis=1)
        cand_cls = np.concatenate([slots, np.where(fresh, classes, -1)], axis=1)
        cand_sum = np.concatenate([sums, np.where(fresh, probs, 0.0)], axis=1)
        key = np.where(cand_cls >= 0, cand_sum, -1.0)
        best = np.argsort(-key, axis=1, kind="stable")[:, : self.top_k]
        self.top_classes[idx] = np.take_along_axis(cand_cls, best, axis=1)
        self.top_prob_sum[idx] = np.take_along_axis(cand_sum, best, axis=1)

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

    def model_probs(self, rows: np.ndarray | None = None) -> SparseProbs:
        """Mean softmax over the observed epochs of each sample's top classes (``(N, K)`` pairs).

        Args:
            rows: sample ids to read (default all).
        """
        sel = slice(None) if rows is None else rows
        classes = self.top_classes[sel].astype(np.int64)
        seen = np.maximum(self.seen_epochs[sel], 1)[:, None]
        return SparseProbs(classes, np.where(classes >= 0, self.top_prob_sum[sel] / seen, 0.0))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain values (ints and numpy arrays) that :meth:`load_state_dict` restores."""
        state: dict[str, Any] = {"num_samples": self.num_samples, "num_classes": self.num_classes,
                                 "top_k": self.top_k, "nonfinite_rows": self.nonfinite_rows}
        state.update({name: getattr(self, name) for name in _ARRAYS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; arrays missing from ``state`` keep their values."""
        shape = tuple(state.get(key, getattr(self, key)) for key in ("num_samples", "num_classes", "top_k"))
        if shape != (self.num_samples, self.num_classes, self.top_k):
            raise ValueError(
                f"checkpointed store has num_samples, num_classes, top_k = {shape}; this run has "
                f"{(self.num_samples, self.num_classes, self.top_k)}. Resume with the same dataset, "
                "`num_classes` and `top_k`."
            )
        self.nonfinite_rows = int(state.get("nonfinite_rows", self.nonfinite_rows))
        for name in _ARRAYS:
            if state.get(name) is None:
                continue
            value = np.asarray(state[name])
            current = getattr(self, name)
            if current is None and name == "embeddings":
                current = self._allocate(name, value.shape, np.float16, fill=0)
            if current is None:
                setattr(self, name, value.copy())
            elif current.shape != value.shape:
                raise ValueError(f"checkpointed `{name}` has shape {value.shape}, expected {current.shape}.")
            else:
                current[...] = value  # in place: memory-mapped arrays stay mapped
                setattr(self, name, current)
