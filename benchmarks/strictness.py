"""The strictness knob: realised precision and recall of ``target_precision`` against its target.

One ``action="flag"`` training per seed and setting (the model and data of ``detection.py``); each
target re-scores the same final store with :func:`fld_train.check.run_check`, so rows differ only by
the knob. Mean over ``--seeds``.

    python benchmarks/strictness.py --dataset digits --noise symmetric:0.2 pairflip:0.4 --seeds 0 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import bench_parser, flag_run, mean_rows, start  # a sibling script

from fld_train.check import run_check
from fld_train.metrics import precision_recall_f1

TARGETS = (None, 0.8, 0.9, 0.95, 0.99)


def run_setting(data, spec: str, seed: int) -> dict[str, tuple[float, float, float]]:
    store, _, mask = flag_run(data, spec, seed)
    rows = {}
    for target in TARGETS:
        ev = run_check(store, target_precision=target)
        p, r, _ = precision_recall_f1(ev.flagged, mask)
        rows["none" if target is None else f"{target:.2f}"] = (p, r, float(ev.flagged.mean()))
    return rows


def main() -> None:
    args = bench_parser(__doc__, ["symmetric:0.2"]).parse_args()
    data = start(args)
    for spec in args.noise:
        rows = mean_rows([run_setting(data, spec, seed) for seed in args.seeds])
        print(f"\n{args.dataset}, {spec}, mean over seeds {args.seeds}")
        print("| target_precision | precision | recall | flagged |\n|---|---|---|---|")
        for key, (p, r, f) in rows.items():
            print(f"| {key} | {p:.3f} | {r:.3f} | {f:.1%} |", flush=True)


if __name__ == "__main__":
    main()
