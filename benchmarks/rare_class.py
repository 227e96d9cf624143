"""Rare classes: what the per-class flag cap (``max_flag_class_fraction``) protects (digits).

One class is cut down to a handful of training images, then labels are flipped symmetrically. A rare
class's correct labels are outvoted by their neighbours (too few of them to fill the k nearest) and
learned late by the model, so the posterior flags them. Each seed's flag-mode run is scored with
each cap of ``--caps`` (the library's default is 0.5): share of the rare class's correct labels
flagged, recall on its wrong labels, F1 and share flagged over all samples.

    python benchmarks/rare_class.py --rare-class 8 --keep 10 --noise symmetric:0.2 --seeds 0 1 2
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import Data, bench_parser, flag_run, mean_rows, start  # a sibling script

from fld_train.check import run_check
from fld_train.metrics import precision_recall_f1


def rare_data(data: Data, rare_class: int, keep: int, seed: int) -> Data:
    """``data`` with only ``keep`` training samples of ``rare_class`` (drawn with ``seed``)."""
    members = np.flatnonzero(data.y == rare_class)
    dropped = np.random.default_rng(seed).permutation(members)[keep:]
    rows = np.setdiff1d(np.arange(data.y.size), dropped)
    return replace(data, x=data.x[rows], y=data.y[rows])


def run_setting(data: Data, spec: str, seed: int, *, rare_class: int, keep: int,
                caps: list[float]) -> dict[float, tuple[float, float, float, float]]:
    """One flag-mode run on ``data`` cut down in ``rare_class``, scored with each cap: cap ->
    (rare class's correct labels flagged, its wrong labels flagged, F1, share flagged)."""
    store, labels, mask = flag_run(rare_data(data, rare_class, keep, seed), spec, seed)
    in_rare = labels == rare_class
    clean_rare, wrong_rare = in_rare & ~mask, in_rare & mask
    rows = {}
    for cap in caps:
        flagged = run_check(store, max_flag_class_fraction=cap).flagged
        rows[cap] = (float(flagged[clean_rare].mean()) if clean_rare.any() else float("nan"),
                     float(flagged[wrong_rare].mean()) if wrong_rare.any() else float("nan"),
                     precision_recall_f1(flagged, mask)[2] if mask.any() else float("nan"),
                     float(flagged.mean()))
    return rows


def main() -> None:
    parser = bench_parser(__doc__, ["symmetric:0.2"])
    parser.add_argument("--rare-class", type=int, default=8)
    parser.add_argument("--keep", type=int, default=10, help="training samples left in the rare class")
    parser.add_argument("--caps", type=float, nargs="+", default=[1.0, 0.5, 0.25],
                        help="max_flag_class_fraction values to score each run with (1.0 = no cap)")
    args = parser.parse_args()
    data = start(args)
    print(f"{args.dataset}: class {args.rare_class} cut to {args.keep} training samples; "
          f"mean over seeds {args.seeds}")
    print("| noise | max_flag_class_fraction | rare class: correct labels flagged | "
          "rare class: wrong labels found | F1 (all) | flagged (all) |")
    print("|---|---|---|---|---|---|")
    for spec in args.noise:
        per_seed = [run_setting(data, spec, seed, rare_class=args.rare_class, keep=args.keep, caps=args.caps)
                    for seed in args.seeds]
        for cap, values in mean_rows(per_seed).items():
            print(f"| {spec} | {'1.0 (no cap)' if cap >= 1.0 else cap} | "
                  + " | ".join("-" if np.isnan(v) else f"{v:.3f}" if i == 2 else f"{v:.1%}"
                               for i, v in enumerate(values)) + " |", flush=True)


if __name__ == "__main__":
    main()
