"""Which epochs the model witness should average: every epoch (the default), a later window, or a
moving average, judged on the same flag run.

The combined posterior averages the model's softmax over every epoch seen, so the early epochs, in
which a network fits the clean labels before it memorises the wrong ones, count as much as the late
ones. They also count where the model was still unsure of hard but correct samples, which is where
the false alarms on clean labels come from. This benchmark records each epoch's softmax of one
``FakeLabelDiscovery(action="flag")`` run (the store's running sums after every epoch), and scores
the final check again with the model witness averaged over

- ``all``: every epoch (the report's own flags, reproduced);
- ``from S%``: the epochs after the first S% of training;
- ``last``: the last epoch only;
- ``ema A``: an exponential moving average with weight ``A`` on each new epoch;

keeping the final check's neighbour votes. Mean over seeds; F1 / AUROC (clean labels: share flagged):

    python benchmarks/epoch_window.py --dataset mnist1d \\
        --noise none:0 symmetric:0.2 symmetric:0.4 pairflip:0.4 instance:0.3 --seeds 0 1 2
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a sibling script
from detection import Data, bench_parser, describe, discovery, fit, flag_metrics, noisy_labels, start

from fld_train import FakeLabelDiscovery, knn, scoring

#: Shares of the earliest epochs left out (``from S%``) and moving-average weights (``ema A``).
SKIPS = (0.25, 0.5, 0.75)
EMA_WEIGHTS = (0.1, 0.3)


class EpochSoftmax(pl.Callback):
    """After every epoch, a copy of ``fld``'s per-sample softmax sums (list it after ``fld``, which
    moves the epoch's observations into its store first)."""

    def __init__(self, fld: FakeLabelDiscovery) -> None:
        self.fld = fld
        self.sums: list[np.ndarray] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        store = self.fld.store
        if store.top_k != store.num_classes:
            raise ValueError("the store must keep every class (top_classes = num_classes) for per-epoch softmax")
        self.sums.append(store.top_prob_sum.astype(np.float64))

    def per_epoch(self) -> np.ndarray:
        """``(E, N, C)`` each epoch's softmax (slot j of the store is class j when it keeps every class)."""
        sums = np.stack(self.sums)
        return np.diff(sums, axis=0, prepend=np.zeros_like(sums[:1]))


def windows(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Each variant's model witness, ``(N, C)``, from the per-epoch softmax ``probs`` ``(E, N, C)``."""
    epochs = probs.shape[0]
    out = {"all": probs.mean(axis=0)}
    for skip in SKIPS:
        start_at = min(round(skip * epochs), epochs - 1)
        out[f"from {skip:.0%}"] = probs[start_at:].mean(axis=0)
    out["last"] = probs[-1]
    for weight in EMA_WEIGHTS:
        ema = probs[0].copy()
        for epoch in probs[1:]:
            ema += weight * (epoch - ema)
        out[f"ema {weight:g}"] = ema
    return out


def window_rows(data: Data, spec: str, seed: int) -> dict[str, dict[str, float]]:
    """One flag run on ``spec`` noise, its final check scored with each window: name -> metrics."""
    labels, mask = noisy_labels(data, spec, seed)
    fld = discovery()
    recorder = EpochSoftmax(fld)
    fit(data, data.x, labels, seed, [fld, recorder])
    store, c = fld.store, fld.num_classes
    neighbours = knn.auto_neighbours(store.embeddings, labels, c)  # the final check's: deterministic
    votes = knn.neighbour_labels(neighbours, labels, c)
    rows = {}
    for name, model_probs in windows(recorder.per_epoch()).items():
        evaluation = scoring.evaluate(labels, model_probs, votes, seen=store.seen)
        rows[name] = flag_metrics(evaluation.flagged, evaluation.scores, mask)
    return rows


def main() -> None:
    args = bench_parser(__doc__, ["none:0", "symmetric:0.4"]).parse_args()
    data = start(args)
    table: dict[str, dict[str, str]] = {}
    for spec in args.noise:
        per_seed = [window_rows(data, spec, seed) for seed in args.seeds]
        for name in per_seed[0]:
            mean = {key: statistics.mean(rows[name][key] for rows in per_seed) for key in ("f1", "auroc", "flagged_share")}
            table.setdefault(name, {})[spec] = (f"{mean['flagged_share']:.1%}" if np.isnan(mean["f1"])
                                                else f"{mean['f1']:.3f} / {mean['auroc']:.3f}")
    print(f"\n{describe(args.dataset, data.model, data.epochs, data.lr)}, mean over seeds {args.seeds}")
    print("| model witness | " + " | ".join(args.noise) + " |")
    print("|---" * (len(args.noise) + 1) + "|")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells[spec] for spec in args.noise) + " |")


if __name__ == "__main__":
    main()
