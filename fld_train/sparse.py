"""Per-sample class probabilities kept as a few ``(class, value)`` pairs instead of ``N x C`` arrays.

With 1,000 classes and a million samples a dense ``(N, C)`` array costs 4 GB; a sample's probability
mass sits on a handful of classes, and so do its k neighbours' labels. :class:`SparseProbs` keeps
``K`` pairs per sample (``-1`` marks an empty slot) and :class:`Segments` merges several of them by
class, row by row, with sorting and ``reduceat``: no Python loop over samples, no ``N x C`` array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fld_train._validation import check_float, check_int

_EMPTY_KEY = np.iinfo(np.int64).max


@dataclass(frozen=True)
class SparseProbs:
    """``K`` (class, value) pairs per sample; absent classes count as 0.

    Attributes:
        classes: ``(N, K)`` int64 class ids, ``-1`` for an empty slot.
        values: ``(N, K)`` float64 values, 0 in empty slots. A class may appear more than once in a
            row; its value is then the sum.
    """

    classes: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.classes) != 2 or np.shape(self.classes) != np.shape(self.values):
            raise ValueError(
                f"`classes` and `values` must be 2-D arrays of one shape (N, K), got "
                f"{np.shape(self.classes)} and {np.shape(self.values)}."
            )

    @property
    def num_rows(self) -> int:
        """N."""
        return int(self.classes.shape[0])

    @classmethod
    def from_dense(cls, dense: np.ndarray, top_k: int | None = None) -> SparseProbs:
        """Keep the ``top_k`` largest entries of each row of ``dense`` (all of them if ``None``).

        Args:
            dense: ``(N, C)`` values.
            top_k: pairs kept per row.
        """
        arr = np.asarray(dense, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"`dense` must have shape (N, C), got {arr.shape}.")
        n, c = arr.shape
        if top_k is None or check_int("top_k", top_k, minimum=1) >= c:
            return cls(np.broadcast_to(np.arange(c, dtype=np.int64), (n, c)).copy(), arr.copy())
        top = np.argpartition(-arr, top_k - 1, axis=1)[:, :top_k]
        return cls(top.astype(np.int64), np.take_along_axis(arr, top, axis=1))

    def average(self, other: SparseProbs, weight: float = 0.5) -> SparseProbs:
        """The weighted mean ``weight * self + (1 - weight) * other`` of two distributions over the same
        rows: both sets of pairs, values scaled (a class in both rows sums, as everywhere in this class).

        Args:
            other: the second distribution, same rows.
            weight: ``self``'s share, in ``[0, 1]`` (0.5: the plain mean).
        """
        weight = check_float("weight", weight, low=0.0, high=1.0)
        return SparseProbs(np.concatenate([self.classes, other.classes], axis=1),
                           np.concatenate([weight * self.values, (1 - weight) * other.values], axis=1))

    def to_dense(self, num_classes: int) -> np.ndarray:
        """``(N, C)`` float64 array (duplicate classes summed)."""
        n = self.num_rows
        valid = self.classes >= 0
        flat = (np.arange(n)[:, None] * num_classes + np.where(valid, self.classes, 0))[valid]
        return np.bincount(flat, weights=self.values[valid], minlength=n * num_classes).reshape(n, num_classes)

    def check(self, name: str, num_rows: int, num_classes: int) -> SparseProbs:
        """Validate against the expected size; returns ``self`` with canonical dtypes."""
        if self.num_rows != num_rows:
            raise ValueError(f"`{name}` has {self.num_rows} rows, expected {num_rows}.")
        classes = np.asarray(self.classes).astype(np.int64, copy=False)
        bad = (classes < -1) | (classes >= num_classes)
        if bad.any():
            raise ValueError(
                f"`{name}` holds class {int(classes[bad][0])}; classes must be in [0, num_classes="
                f"{num_classes}) or -1 for an empty slot."
            )
        values = np.where(classes >= 0, np.asarray(self.values, dtype=np.float64), 0.0)
        return SparseProbs(classes, values)


@dataclass(frozen=True)
class Segments:
    """The distinct classes of each row, with each channel's values summed per class.

    Attributes:
        classes: ``(S,)`` class of each segment; segments of one row are contiguous, classes
            ascending within a row.
        rows: ``(S,)`` row of each segment, non-decreasing.
        values: ``(P, S)`` one row of summed values per input channel.
        row_start: ``(N,)`` first segment of each row (every row has at least one segment).
    """

    classes: np.ndarray
    rows: np.ndarray
    values: np.ndarray
    row_start: np.ndarray

    @classmethod
    def merge(cls, classes: np.ndarray, channels: np.ndarray) -> Segments:
        """Merge the columns of ``classes`` by class, row by row.

        Args:
            classes: ``(N, M)`` int64 class ids, -1 for empty; every row needs one valid class.
            channels: ``(P, N, M)`` values; empty slots must hold 0.
        """
        n, m = classes.shape
        key = np.where(classes >= 0, classes, _EMPTY_KEY)
        order = np.argsort(key, axis=1, kind="stable")
        key = np.take_along_axis(key, order, axis=1).ravel()
        vals = np.take_along_axis(channels, order[None], axis=2).reshape(channels.shape[0], -1)
        row_of = np.repeat(np.arange(n), m)
        new = np.ones(key.size, dtype=bool)
        new[1:] = (key[1:] != key[:-1]) | (row_of[1:] != row_of[:-1])
        starts = np.flatnonzero(new & (key != _EMPTY_KEY))
        rows = row_of[starts]
        row_start = np.searchsorted(rows, np.arange(n))
        if rows.size == 0 or np.any(np.diff(np.append(row_start, rows.size)) <= 0):
            raise ValueError("every row needs at least one valid class")
        # trailing empties of a row fall into its last segment; they hold 0
        return cls(key[starts], rows, np.add.reduceat(vals, starts, axis=1), row_start)

    @property
    def num_rows(self) -> int:
        """N."""
        return int(self.row_start.size)

    def at(self, values: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``(N,)`` value of the segment whose class is ``target[row]`` (0 where absent)."""
        hit = self.classes == target[self.rows]
        out = np.zeros(self.num_rows, dtype=values.dtype)
        out[self.rows[hit]] = values[hit]
        return out

    def row_max(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` largest segment value of each row."""
        return np.maximum.reduceat(values, self.row_start)

    def row_argmax(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` class of each row's largest value; ties go to the smallest class, as ``argmax``."""
        best = self.row_max(values)[self.rows]
        seg = np.arange(self.classes.size)
        first = np.minimum.reduceat(np.where(values == best, seg, seg.size), self.row_start)
        return self.classes[first]
