"""Wall-time cost of the callback: the same digits training with and without FakeLabelDiscovery.

Both trainings run in this one process, alternating, ``--repeats`` times each; the table reports
the median wall time of each and their ratio. Run it alone on the machine (two cores).

    python benchmarks/overhead.py --epochs 30 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise


def _time_fit(x, labels, callbacks, epochs: int) -> float:
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(labels)))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=callbacks,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    model = MLPClassifier(x.shape[1], 10)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(ds, batch_size=64, shuffle=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-every", type=int, default=2)
    parser.add_argument("--action", default="relabel", choices=["flag", "relabel", "downweight"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    x, y, _, _ = load_digits_split(0)
    noisy, _ = inject_noise(y, 10, rate=0.2, seed=0)
    _time_fit(x, noisy, [], 1)  # warm-up: imports, allocator
    plain, with_fld = [], []
    for _ in range(args.repeats):
        plain.append(_time_fit(x, noisy, [], args.epochs))
        fld = FakeLabelDiscovery(10, check_every_n_epochs=args.check_every, action=args.action)
        with_fld.append(_time_fit(x, noisy, [fld], args.epochs))
    a, b = statistics.median(plain), statistics.median(with_fld)
    print(f"digits, {len(y)} samples, {args.epochs} epochs, check every {args.check_every}, "
          f"action={args.action}, torch threads={args.threads}, median of {args.repeats}")
    print("| run | wall time (s) |\n|---|---|")
    print(f"| plain training | {a:.2f} |\n| with FakeLabelDiscovery | {b:.2f} |")
    print(f"| ratio | {b / a:.3f} |")


if __name__ == "__main__":
    main()
