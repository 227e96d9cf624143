"""Which flag rule: confident learning's, or the combined posterior's argmax? Same run, both rules.

One ``action="flag"`` training per setting; from its store, the combined posterior ``q`` (mean softmax
and kNN label distribution, averaged) is judged two ways:

- ``confident learning``: flag when the most probable class the sample is *confidently* in
  (``q_j >= t_j``, ``t_j`` the mean ``q_j`` over samples labelled ``j``) is not its given label;
- ``posterior argmax``: flag when ``argmax q`` is not the given label (fld-train's rule).

    python benchmarks/flag_rules.py --dataset digits --noise symmetric:0.2 instance:0.3 --seed 0
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import torch

from fld_train import FakeLabelDiscovery, knn, scoring
from fld_train.metrics import precision_recall_f1

try:
    from detection import DATASETS, fit, noisy_labels
except ImportError:  # run from the repository root
    from benchmarks.detection import DATASETS, fit, noisy_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--noise", nargs="+", default=["symmetric:0.2", "instance:0.3"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = DATASETS[args.dataset]()
    print(f"{args.dataset}, seed {args.seed}")
    print("| noise | rule | flagged | precision | recall | F1 |\n|---|---|---|---|---|---|")
    for spec in args.noise:
        labels, mask = noisy_labels(data, spec, args.seed)
        fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="flag", tensorboard=False)
        fit(data, data.x, labels, args.seed, [fld])
        store = fld.store
        dist = knn.neighbour_label_distribution(knn.search(store.embeddings.astype(np.float32), k=10),
                                                labels, 10)
        q = 0.5 * store.mean_class_probs() + 0.5 * dist
        t = scoring.per_class_thresholds(q, labels, store.seen)
        confident = np.where(q >= t[None, :] - 1e-9, q, -np.inf)
        has = np.isfinite(confident).any(axis=1)
        rules = {"confident learning": has & (confident.argmax(axis=1) != labels),
                 "posterior argmax": q.argmax(axis=1) != labels}
        for name, flagged in rules.items():
            p, r, f1 = precision_recall_f1(flagged, mask)
            print(f"| {spec} | {name} | {flagged.mean():.1%} | {p:.3f} | {r:.3f} | {f1:.3f} |", flush=True)


if __name__ == "__main__":
    main()
