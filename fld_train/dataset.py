"""``RelabeledDataset``: a map-style dataset wrapper with reversible label and weight overrides.

``base[i] -> (x, y)`` becomes ``dataset[i] -> (x, y_now, i)``. The current labels and weights live in
shared-memory tensors that are only ever written in place, so DataLoader workers (persistent ones
included, fork or spawn) see a change from the next batch they build. The original labels never
change, and every change is recorded in an audit trail that :meth:`RelabeledDataset.revert` can undo.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from fld_train._io import atomic_write
from fld_train._validation import check_float, check_labels
from fld_train.review import Review, read_review_file


@dataclass(frozen=True)
class Change:
    """One entry of the audit trail.

    Attributes:
        index: dataset index of the sample.
        field: ``"label"``, ``"weight"``, or ``"review"`` (a reviewer's decision; old and new are
            the labels served before and after it).
        old: value before the change.
        new: value after the change.
        epoch: training epoch of the change (-1 outside training).
        reason: why (for example ``"relabel: score=0.93 ..."`` or ``"revert"``).
    """

    index: int
    field: str
    old: float
    new: float
    epoch: int
    reason: str


def _read_labels(base: Any) -> np.ndarray:
    """Labels of every sample of ``base`` without loading inputs where the dataset allows it."""
    for attr in ("targets", "labels"):
        values = getattr(base, attr, None)
        if values is not None and not callable(values):
            return np.asarray(values.tolist() if torch.is_tensor(values) else values)
    tensors = getattr(base, "tensors", None)  # torch.utils.data.TensorDataset
    if isinstance(tensors, tuple) and len(tensors) >= 2:
        return tensors[1].numpy()
    labels = []
    for i in range(len(base)):
        item = base[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(
                f"`base[{i}]` must be an (x, y) pair, got {type(item).__name__}. Pass `labels=` if "
                "the dataset yields another structure."
            )
        y = item[1]
        labels.append(int(y.item() if torch.is_tensor(y) else y))
    return np.asarray(labels)


class RelabeledDataset(Dataset):
    """Wrap a map-style ``(x, y)`` dataset so labels can be corrected while training runs.

    Args:
        base: map-style dataset; ``base[i]`` returns ``(x, y)`` with an integer class label.
        labels: the base dataset's labels, ``(N,)``. Read from ``base.targets``, ``base.labels``,
            ``base.tensors[1]`` or, as a last resort, by indexing every item, when omitted.
        num_classes: if given, labels are checked to lie in ``[0, num_classes)``.

    Example:
        >>> train_set = RelabeledDataset(base)  # doctest: +SKIP
        >>> x, y_now, i = train_set[0]  # doctest: +SKIP
    """

    def __init__(
        self, base: Dataset, *, labels: Sequence[int] | np.ndarray | None = None,
        num_classes: int | None = None,
    ) -> None:
        if isinstance(base, IterableDataset):
            raise TypeError(
                f"`base` must be a map-style dataset (indexable, with __len__); got the iterable "
                f"dataset {type(base).__name__}, whose samples have no stable index to override. "
                "Yield (x, y, idx) yourself and use FakeLabelDiscovery(action='flag')."
            )
        if not hasattr(base, "__getitem__") or not hasattr(base, "__len__"):
            raise TypeError(
                f"`base` must be a map-style dataset with __getitem__ and __len__, got "
                f"{type(base).__name__}."
            )
        self.base = base
        n = len(base)
        raw = _read_labels(base) if labels is None else labels
        original = check_labels("labels", raw, num_classes=num_classes, length=n)
        self.num_classes = num_classes
        self._original = torch.from_numpy(original.copy())
        self._original.share_memory_()
        self._labels = self._original.clone().share_memory_()
        self._weights = torch.ones(n, dtype=torch.float32).share_memory_()
        self._log: list[Change] = []
        self._reviews: dict[int, Review] = {}
        self._reduced_weights = 0  # samples with weight < 1, kept current by every weight change
        self._weights_version = 0  # counts weight writes, so copies elsewhere know when to refresh

    # ------------------------------------------------------------------ Dataset API
    def __len__(self) -> int:
        return self._labels.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        item = self.base[index]
        x = item[0]
        i = int(index)
        return x, int(self._labels.numpy()[i]), i  # numpy indexing: ~10x cheaper than a tensor's

    # ------------------------------------------------------------------ views
    @property
    def original_labels(self) -> np.ndarray:
        """``(N,)`` int64 labels of the base dataset; never changes (a copy)."""
        return self._original.numpy().copy()

    @property
    def current_labels(self) -> np.ndarray:
        """``(N,)`` int64 labels that ``__getitem__`` returns now (a copy)."""
        return self._labels.numpy().copy()

    @property
    def weights(self) -> np.ndarray:
        """``(N,)`` float32 per-sample training weights (1 unless down-weighted; a copy)."""
        return self._weights.numpy().copy()

    @property
    def weights_version(self) -> int:
        """Increases with every write to the weights (a copy made at one version is current while
        the version stays the same)."""
        return self._weights_version

    @property
    def has_reduced_weights(self) -> bool:
        """Some sample has weight below 1 (cheap: tracked on every change, no scan)."""
        return self._reduced_weights > 0

    def weights_of(self, indices: torch.Tensor) -> torch.Tensor:
        """Weights of a batch's sample indices, as a float32 tensor on the indices' device."""
        return self._weights[indices.detach().cpu().long()].to(indices.device)

    @property
    def relabeled_indices(self) -> np.ndarray:
        """Indices whose current label differs from the original one."""
        return np.flatnonzero((self._labels != self._original).numpy())

    @property
    def audit_log(self) -> list[Change]:
        """Every change made so far, oldest first (a copy)."""
        return list(self._log)

    @property
    def reviews(self) -> list[Review]:
        """The reviewer decisions applied so far, latest per index (a copy)."""
        return list(self._reviews.values())

    @property
    def reviewed_mask(self) -> np.ndarray:
        """``(N,)`` bool, a reviewer decided the sample; automatic checks leave it alone."""
        mask = np.zeros(len(self), dtype=bool)
        mask[list(self._reviews)] = True
        return mask

    # ------------------------------------------------------------------ changes
    def set_labels(
        self, indices: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray, *,
        epoch: int = -1, reason: str | Sequence[str] = "",
    ) -> int:
        """Override the labels of ``indices``; returns how many labels actually changed.

        Args:
            indices: ``(M,)`` dataset indices.
            labels: ``(M,)`` new labels.
            epoch: training epoch recorded in the audit trail.
            reason: one reason for all, or one per index.
        """
        idx = self._check_indices(indices)
        new = check_labels("labels", labels, num_classes=self.num_classes, length=idx.size)
        reasons = self._reasons(reason, idx.size)
        old = self._labels.numpy()[idx]
        changed = old != new
        self._labels[torch.from_numpy(idx[changed])] = torch.from_numpy(new[changed])
        self._record(idx, old, new, changed, "label", epoch, reasons)
        return int(changed.sum())

    def set_weights(
        self, indices: Sequence[int] | np.ndarray, weights: Sequence[float] | np.ndarray | float, *,
        epoch: int = -1, reason: str | Sequence[str] = "",
    ) -> int:
        """Set the training weights of ``indices`` (each in ``[0, 1]``); returns how many changed."""
        idx = self._check_indices(indices)
        new = np.broadcast_to(np.asarray(weights, dtype=np.float32), idx.shape)
        if new.size:
            if not np.all(np.isfinite(new)):
                raise ValueError("`weights` must be finite numbers in [0, 1].")
            check_float("weights", float(new.min()), low=0.0, high=1.0)
            check_float("weights", float(new.max()), low=0.0, high=1.0)
        reasons = self._reasons(reason, idx.size)
        old = self._weights.numpy()[idx]
        changed = old != new
        self._weights[torch.from_numpy(idx[changed])] = torch.from_numpy(np.array(new[changed]))
        self._reduced_weights += int(np.sum(new[changed] < 1)) - int(np.sum(old[changed] < 1))
        self._weights_version += int(changed.any())
        self._record(idx, old, new, changed, "weight", epoch, reasons)
        return int(changed.sum())

    def revert(
        self, indices: Sequence[int] | np.ndarray | None = None, *, epoch: int = -1,
        reason: str = "revert",
    ) -> int:
        """Restore original labels and weight 1 for ``indices`` (all when ``None``), audited.

        Returns:
            How many labels or weights changed.
        """
        idx = np.arange(len(self)) if indices is None else self._check_indices(indices)
        changed = self.set_labels(idx, self._original.numpy()[idx], epoch=epoch, reason=reason)
        return changed + self.set_weights(idx, 1.0, epoch=epoch, reason=reason)

    def apply_review(self, path: str | os.PathLike[str], *, epoch: int = -1) -> int:
        """Apply a reviewed queue (CSV or JSONL from ``LabelReport.review_queue``).

        ``keep`` restores the original label (weight 1), ``relabel`` sets ``review_label``
        (weight 1), ``exclude`` sets weight 0. Every change is audited with reason
        ``review: <decision>``; reviewed samples keep the reviewer's decision at later automatic
        checks. The whole file is validated first: a bad file raises
        :class:`~fld_train.review.ReviewFileError` and changes nothing.

        Returns:
            The number of reviewed samples applied.
        """
        decisions = read_review_file(path, num_samples=len(self), num_classes=self.num_classes)
        original = self._original.numpy()
        prior = self._labels.numpy().copy()
        idx = np.array([i for i, _, _ in decisions], dtype=np.int64)
        labels = np.array([lab if d == "relabel" else original[i] for i, d, lab in decisions], dtype=np.int64)
        self._serve_reviews(idx, labels, [d for _, d, _ in decisions], epoch=epoch, reason_suffix="")
        for (i, d, _), label in zip(decisions, labels.tolist()):
            self._reviews[i] = Review(i, d, label, int(prior[i]), int(epoch))
            # the decision itself is audited too, even when it confirms what was served
            self._log.append(Change(i, "review", int(prior[i]), label, int(epoch), f"review: {d}"))
        return len(decisions)

    def reapply_reviews(self, reviews: list[Review], *, epoch: int = -1) -> int:
        """Serve each review's label and weight again (after a checkpoint restore overwrote them).

        Returns:
            How many labels or weights changed; each change is audited.
        """
        for r in reviews:
            self._reviews[r.index] = r
        return self._serve_reviews(np.array([r.index for r in reviews], dtype=np.int64),
                                   np.array([r.label for r in reviews], dtype=np.int64),
                                   [r.decision for r in reviews], epoch=epoch,
                                   reason_suffix=" (re-applied)")

    def _serve_reviews(self, idx: np.ndarray, labels: np.ndarray, decisions: list[str], *,
                       epoch: int, reason_suffix: str) -> int:
        """Serve ``labels`` with weight 1 (0 for ``exclude``), audited as ``review: <decision>``."""
        if idx.size == 0:
            return 0
        reasons = [f"review: {d}{reason_suffix}" for d in decisions]
        weights = np.array([0.0 if d == "exclude" else 1.0 for d in decisions], dtype=np.float32)
        changed = self.set_labels(idx, labels, epoch=epoch, reason=reasons)
        return changed + self.set_weights(idx, weights, epoch=epoch, reason=reasons)

    def write_audit_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the audit trail as CSV (index, field, old, new, epoch, reason), atomically."""
        with atomic_write(path) as fh:
            writer = csv.DictWriter(fh, fieldnames=[f for f in Change.__dataclass_fields__])
            writer.writeheader()
            writer.writerows(asdict(c) for c in self._log)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Current labels, weights and the audit trail as plain values."""
        return {
            "labels": self._labels.numpy().copy(),
            "weights": self._weights.numpy().copy(),
            "audit_log": [asdict(c) for c in self._log],
            "reviews": [asdict(r) for r in self._reviews.values()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output in place (workers keep seeing the same memory)."""
        if "labels" in state:
            labels = check_labels("state['labels']", state["labels"], length=len(self))
            self._labels.copy_(torch.from_numpy(labels))
        if "weights" in state:
            self._weights.copy_(torch.as_tensor(np.asarray(state["weights"], dtype=np.float32)))
            self._reduced_weights = int((self._weights < 1).sum())
            self._weights_version += 1
        if "audit_log" in state:
            self._log = [Change(**entry) for entry in state["audit_log"]]
        if "reviews" in state:
            self._reviews = {int(r["index"]): Review(**r) for r in state["reviews"]}

    def own_memory(self) -> None:
        """Move the current labels and weights to shared memory of this process's own.

        A dataset that reached this process by pickling (``ddp_spawn``) or by ``fork`` shares its
        tensors with the process it came from and with sibling ranks, which would then overwrite
        each other's overrides. Call this before DataLoader workers start (``FakeLabelDiscovery``
        does, at ``on_train_start`` under DDP); workers started afterwards share the new copy.
        """
        self._labels = self._labels.clone().share_memory_()
        self._weights = self._weights.clone().share_memory_()

    # ------------------------------------------------------------------ helpers
    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = check_labels("indices", indices)
        bad = np.flatnonzero((idx < 0) | (idx >= len(self)))
        if bad.size:
            raise IndexError(
                f"`indices` must lie in [0, {len(self)}), got {int(idx[bad[0]])} at position {int(bad[0])}."
            )
        if np.unique(idx).size != idx.size:
            raise ValueError("`indices` must not repeat an index.")
        return idx

    @staticmethod
    def _reasons(reason: str | Sequence[str], size: int) -> list[str]:
        reasons = [reason] * size if isinstance(reason, str) else list(reason)
        if len(reasons) != size:
            raise ValueError(f"`reason` must be one string or {size} strings, got {len(reasons)}.")
        return reasons

    def _record(
        self, idx: np.ndarray, old: np.ndarray, new: np.ndarray, changed: np.ndarray, field: str,
        epoch: int, reasons: list[str],
    ) -> None:
        cast = int if field == "label" else float
        self._log.extend(
            Change(int(i), field, cast(o), cast(v), int(epoch), reasons[j])
            for j, (i, o, v) in enumerate(zip(idx, old, new))
            if changed[j]
        )
