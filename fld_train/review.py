"""Human review: the queue a reviewer works through, and the decisions that come back.

A queue (CSV and JSONL, same rows) lists flagged samples, ranked. A reviewer fills two columns,
``review_decision`` (``keep``, ``relabel`` or ``exclude``; empty = not reviewed yet) and
``review_label`` (the right class, for ``relabel``), and the file goes to
:meth:`fld_train.RelabeledDataset.apply_review`. Everything here is numpy and the standard library.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fld_train._io import atomic_write

REVIEW_DECISIONS = ("keep", "relabel", "exclude")
QUEUE_COLUMNS = ("rank", "index", "given_label", "current_label", "suggested_label", "score",
                 "decision", "reason", "review_decision", "review_label")


@dataclass(frozen=True)
class Review:
    """One reviewer decision, as applied.

    Attributes:
        index: dataset index.
        decision: ``"keep"`` (the original label is right), ``"relabel"`` or ``"exclude"`` (train
            without the sample: weight 0).
        label: the label served after the review.
        prior_label: the label served before it (differs from the original one when an automatic
            correction was in place: that is what the reviewer confirmed or overruled).
        epoch: training epoch of the review (-1 outside training).
    """

    index: int
    decision: str
    label: int
    prior_label: int
    epoch: int


class ReviewFileError(ValueError):
    """A review file that cannot be applied; nothing was changed."""


def queue_order(scores: np.ndarray, decisions: np.ndarray, flagged: np.ndarray,
                exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the review queue, most useful first.

    First the flagged samples that no automatic decision resolved (``review``), by score,
    highest first: each is likely wrong and nothing fixes it without a human. Then the automatic
    corrections (``relabel``, ``downweight``), lowest score first: the least certain automatic
    changes are the ones worth auditing.

    Args:
        scores: ``(N,)`` scores.
        decisions: ``(N,)`` decision names.
        flagged: ``(N,)`` bool.
        exclude: ``(N,)`` bool, samples to leave out (already reviewed).
    """
    keep = flagged if exclude is None else flagged & ~exclude
    unresolved = np.flatnonzero(keep & (decisions == "review"))
    automatic = np.flatnonzero(keep & (decisions != "review"))
    return np.concatenate([
        unresolved[np.argsort(-scores[unresolved], kind="stable")],
        automatic[np.argsort(scores[automatic], kind="stable")],
    ])


def write_queue(
    out_dir: str | os.PathLike[str],
    rows: list[dict[str, Any]],
    *,
    paths: Sequence[str] | None = None,
    images: Callable[[int], np.ndarray] | None = None,
) -> tuple[Path, Path]:
    """Write ``review_queue.csv`` and ``review_queue.jsonl`` (and thumbnails) into ``out_dir``.

    Args:
        out_dir: folder, created if needed.
        rows: queue rows with the :data:`QUEUE_COLUMNS` keys.
        paths: the dataset's file paths by index; adds a ``path`` column. Omit to keep file paths
            out of the queue.
        images: index -> ``(H, W)`` or ``(H, W, 3)`` uint8 image; writes ``thumbnails/<index>.png``
            and adds a ``thumbnail`` column. Omit to keep raw data out of the queue.

    Returns:
        The CSV and JSONL paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(QUEUE_COLUMNS)
    if paths is not None:
        columns.append("path")
        for row in rows:
            row["path"] = str(paths[row["index"]])
    if images is not None:
        from PIL import Image

        columns.append("thumbnail")
        (out / "thumbnails").mkdir(exist_ok=True)
        for row in rows:
            name = f"thumbnails/{row['index']}.png"
            Image.fromarray(np.asarray(images(row["index"]), dtype=np.uint8)).save(out / name)
            row["thumbnail"] = name
    csv_path, jsonl_path = out / "review_queue.csv", out / "review_queue.jsonl"
    with atomic_write(csv_path) as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_write(jsonl_path, newline=None) as fh:
        for row in rows:
            fh.write(json.dumps({c: row[c] for c in columns}) + "\n")
    return csv_path, jsonl_path


def read_review_file(
    path: str | os.PathLike[str], *, num_samples: int, num_classes: int | None
) -> list[tuple[int, str, int | None]]:
    """Read and validate a reviewed queue; returns ``(index, decision, label or None)`` per decided row.

    Rows with an empty ``review_decision`` are skipped (not reviewed yet). Every row is checked
    before anything is returned, so a bad file changes nothing.

    Raises:
        ReviewFileError: unknown format, missing column, bad index, repeated index, unknown
            decision, missing or out-of-range label; the message names file, line and value.
    """
    p = Path(path)
    rows = list(_rows(p))
    out: list[tuple[int, str, int | None]] = []
    seen: dict[int, int] = {}
    for line, row in rows:
        where = f"{p.name}, line {line}"
        for column in ("index", "review_decision"):
            if column not in row:
                raise ReviewFileError(f"{where}: missing column `{column}`; the queue's columns are "
                                      f"{', '.join(QUEUE_COLUMNS)}.")
        decision = str(row["review_decision"] or "").strip().lower()
        if not decision:
            continue
        index = _as_int(row["index"], "index", where)
        if not 0 <= index < num_samples:
            raise ReviewFileError(f"{where}: `index` {index} is outside [0, {num_samples}).")
        if index in seen:
            raise ReviewFileError(f"{where}: index {index} was already decided on line {seen[index]}.")
        seen[index] = line
        if decision not in REVIEW_DECISIONS:
            raise ReviewFileError(f"{where}: `review_decision` must be one of "
                                  f"{', '.join(REVIEW_DECISIONS)} (or empty), got {row['review_decision']!r}.")
        label = None
        if decision == "relabel":
            raw = row.get("review_label")
            if raw is None or str(raw).strip() == "":
                raise ReviewFileError(f"{where}: `review_decision` relabel needs a `review_label`.")
            label = _as_int(raw, "review_label", where)
            upper = f", {num_classes}" if num_classes is not None else ", inf"
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise ReviewFileError(f"{where}: `review_label` {label} is outside [0{upper}).")
        out.append((index, decision, label))
    return out


def human_agreement(reviews: Iterable[Review], original_labels: np.ndarray,
                    num_classes: int) -> dict[str, Any]:
    """Share of the automatic corrections that reviewers confirmed, overall and per original class.

    An automatic correction is a review whose ``prior_label`` differs from the original label; it is
    confirmed when the reviewer relabeled to that same label, and overruled otherwise (``keep``,
    ``exclude`` or another label).

    Returns:
        ``{"reviewed_corrections": n, "confirmed": k, "overall": k / n (nan if n == 0),
        "per_class": (C,) array of shares (nan where a class had none)}``.
    """
    original = np.asarray(original_labels)
    corrected = [r for r in reviews if r.prior_label != original[r.index]]
    classes = np.array([original[r.index] for r in corrected], dtype=np.int64)
    ok = np.array([r.decision == "relabel" and r.label == r.prior_label for r in corrected], dtype=float)
    count = np.bincount(classes, minlength=num_classes).astype(float)
    hits = np.bincount(classes, weights=ok, minlength=num_classes)
    return {
        "reviewed_corrections": len(corrected),
        "confirmed": int(ok.sum()),
        "overall": float(ok.mean()) if len(corrected) else float("nan"),
        "per_class": np.divide(hits, count, out=np.full(num_classes, np.nan), where=count > 0),
    }


def _rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise ReviewFileError(f"review file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            for i, row in enumerate(reader, start=2):
                yield i, row
    elif suffix == ".jsonl":
        with open(path) as fh:
            for i, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as err:
                    raise ReviewFileError(f"{path.name}, line {i}: not valid JSON ({err.msg}).") from None
                if not isinstance(row, dict):
                    raise ReviewFileError(f"{path.name}, line {i}: each line must be a JSON object.")
                yield i, row
    else:
        raise ReviewFileError(f"review file {path.name} must end in .csv or .jsonl, got {suffix!r}.")


def _as_int(value: Any, column: str, where: str) -> int:
    if isinstance(value, bool):
        raise ReviewFileError(f"{where}: `{column}` must be an integer, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReviewFileError(f"{where}: `{column}` must be an integer, got {value!r}.") from None
    if not number.is_integer():
        raise ReviewFileError(f"{where}: `{column}` must be an integer, got {value!r}.")
    return int(number)
