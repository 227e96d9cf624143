"""Every check of one flag run, and how far the model fits labels its neighbours do not support.

The report a user reads is the latest check's. A model that memorises its labels makes later checks
worse: the training dynamics fill up with fitted wrong labels and their embeddings move toward the
wrong class. This benchmark prints, for each check of a ``FakeLabelDiscovery(action="flag")`` run
(mean over seeds):

- ``fits``: share of samples the model predicted as their label in the latest epoch (training mode);
- ``supported``: share whose label is the most common one among their neighbours (the check's own
  neighbours, found again: :func:`fld_train.knn.auto_neighbours` is deterministic);
- ``fits - supported``: the share the model fits beyond what its own neighbourhood supports;
- flagged share, precision, recall, F1 and AUROC of that check against the injected noise.

    python benchmarks/check_curve.py --dataset mnist1d --noise symmetric:0.4 none:0 --seeds 0 1 2
    python benchmarks/check_curve.py --dataset mnist1d --epochs 60 --lr 0.01 --batch-size 100 \\
        --noise symmetric:0.4 --seeds 0 1 2
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a sibling script
from detection import Data, bench_parser, describe, discovery, fit, flag_metrics, noisy_labels, start

from fld_train import FakeLabelDiscovery, knn

COLUMNS = ("fits", "supported", "gap", "flagged_share", "precision", "recall", "f1", "auroc")


class CheckRecorder(pl.Callback):
    """Reads the report of every check ``fld`` runs; list it after ``fld`` in the Trainer's callbacks."""

    def __init__(self, fld: FakeLabelDiscovery, noise_mask: np.ndarray) -> None:
        self.fld, self.mask = fld, noise_mask
        self.rows: dict[int, dict[str, float]] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            checked = self.fld.report().epoch
        except RuntimeError:  # no check yet
            return
        if checked == trainer.current_epoch:  # a check ran at this epoch's end
            self.rows[checked] = check_row(self.fld, self.mask)


def check_row(fld: FakeLabelDiscovery, noise_mask: np.ndarray) -> dict[str, float]:
    """One check's numbers (see the module docstring)."""
    report, store = fld.report(), fld.store
    seen = store.seen
    labels = store.given_labels[seen]
    neighbours = knn.auto_neighbours(store.embeddings[seen], labels, store.num_classes)
    votes = knn.neighbour_label_distribution(neighbours, labels, store.num_classes)
    fits = float(store.correct_last[seen].mean())
    supported = float((votes.argmax(axis=1) == labels).mean())
    return {"fits": fits, "supported": supported, "gap": fits - supported,
            **flag_metrics(report.flagged, report.scores, noise_mask)}


def curve(data: Data, spec: str, seed: int) -> dict[int, dict[str, float]]:
    """Every check of one flag run on ``spec`` noise: epoch -> :func:`check_row`."""
    labels, mask = noisy_labels(data, spec, seed)
    fld = discovery()
    recorder = CheckRecorder(fld, mask)
    fit(data, data.x, labels, seed, [fld, recorder])
    return recorder.rows


def print_curve(title: str, per_seed: list[dict[int, dict[str, float]]]) -> None:
    """One setting: a row per check epoch, each column the mean over seeds (NaN-aware)."""
    print(f"\n{title}")
    print("| epoch | fits | supported | fits - supported | flagged | precision | recall | F1 | AUROC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for epoch in sorted(set.intersection(*(set(s) for s in per_seed))):
        mean: dict[str, Any] = {}
        for c in COLUMNS:
            values = [s[epoch][c] for s in per_seed if not np.isnan(s[epoch][c])]
            mean[c] = statistics.mean(values) if values else float("nan")
        print(f"| {epoch + 1} | " + " | ".join(
            "-" if np.isnan(mean[c]) else f"{mean[c]:.3f}" for c in COLUMNS) + " |", flush=True)


def main() -> None:
    args = bench_parser(__doc__, ["symmetric:0.4", "none:0"]).parse_args()
    data = start(args)
    for spec in args.noise:
        per_seed = [curve(data, spec, seed) for seed in args.seeds]
        print_curve(f"{describe(args.dataset, data.model, data.epochs, data.lr)}, {spec}, "
                    f"checks every 2 epochs, mean over seeds {args.seeds}", per_seed)


if __name__ == "__main__":
    main()
