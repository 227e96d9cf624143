"""What a check writes to the Trainer's loggers (TensorBoard by default)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fld_train.report import LabelReport

#: Prefix of every tag fld-train writes.
PREFIX = "fld"


def check_scalars(report: LabelReport) -> dict[str, float]:
    """Scalars of one check: counts and fractions of flagged, relabeled, down-weighted and review samples.

    ``relabeled`` and ``downweighted`` count what training uses after the check (current label
    differs from the given one; weight below 1), so reverted overrides no longer count.
    """
    n = max(len(report), 1)
    counts = {
        "flagged": float(report.flagged.sum()),
        "relabeled": float((report.current_labels != report.given_labels).sum()),
        "downweighted": float((report.weights < 1.0).sum()),
        "review": float((report.decisions == "review").sum()),
    }
    out = {}
    for key, value in counts.items():
        out[f"{PREFIX}/{key}"] = value
        out[f"{PREFIX}/{key}_fraction"] = value / n
    return out


def log_check(loggers: Iterable[Any], report: LabelReport, step: int) -> dict[str, float]:
    """Send :func:`check_scalars` to every logger (Lightning loggers write on rank 0 only)."""
    scalars = check_scalars(report)
    for logger in loggers:
        logger.log_metrics(scalars, step=step)
    return scalars
