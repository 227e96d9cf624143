"""Planted labels: what fld-train catches when whole neighbourhoods are flipped (digits).

Clustered noise flips a sample and its nearest same-class neighbours (in pixel space) to one other
class, as someone planting labels would; symmetric noise at the same rate is the reference. For each
setting: detection against the planted mask, what the relabels did (right, wrong), and the most
labels one check changed, overall and in one class, against the budgets.

    python benchmarks/adversarial.py --rates 0.1 0.2 --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings
from collections import Counter

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise


def run(kind: str, rate: float, seed: int, epochs: int, cluster_size: int) -> dict[str, float]:
    x, y, _, _ = load_digits_split(seed=0)
    noisy, mask = inject_noise(y, 10, rate=rate, kind=kind, seed=seed, features=x,
                               cluster_size=cluster_size)
    pl.seed_everything(seed, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel")
    pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[fld],
               enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64, shuffle=True))
    report = fld.report()
    m = report.detection(mask)
    changed = report.current_labels != report.given_labels
    per_check = Counter(c.epoch for c in ds.audit_log if c.field == "label" and c.new != noisy[c.index])
    per_class = Counter((c.epoch, noisy[c.index]) for c in ds.audit_log
                        if c.field == "label" and c.new != noisy[c.index])
    class_sizes = np.bincount(noisy, minlength=10)
    return {
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "auroc": m.auroc,
        "relabeled": float(changed.sum()),
        "relabels_right": float(np.sum(changed & (report.current_labels == y))),
        "relabels_wrong": float(np.sum(changed & (report.current_labels != y))),
        "clean_relabeled": float(np.sum(changed & ~mask)),
        "max_check_share": max(per_check.values(), default=0) / len(y),
        "max_class_share": max((v / class_sizes[c] for (_, c), v in per_class.items()), default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cluster-size", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    print(f"digits (1437 train), relabel, {args.epochs} epochs, check every 2, mean over seeds "
          f"{args.seeds}; clustered = neighbourhoods of {args.cluster_size}")
    print("| noise | rate | precision | recall | F1 | AUROC | relabeled | right | wrong | clean samples "
          "relabeled | max share changed by one check | max share of one class |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("symmetric", "clustered"):
        for rate in args.rates:
            rows = [run(kind, rate, s, args.epochs, args.cluster_size) for s in args.seeds]
            mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
            print(f"| {kind} | {rate:.0%} | {mean['precision']:.3f} | {mean['recall']:.3f} | "
                  f"{mean['f1']:.3f} | {mean['auroc']:.3f} | {mean['relabeled']:.0f} | "
                  f"{mean['relabels_right']:.0f} | {mean['relabels_wrong']:.0f} | "
                  f"{mean['clean_relabeled']:.0f} | {mean['max_check_share']:.3f} | "
                  f"{mean['max_class_share']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
