"""Wall-time cost of the callback: the same digits training with and without FakeLabelDiscovery.

Three trainings run in this one process, in turn, ``--repeats`` times each, all logging to
TensorBoard: plain, with the callback writing counts only (``tensorboard=False``), and with the
callback writing everything (histograms, PR curve, images, text, projector at the end). The table
reports the median wall time of each and the ratios to plain. Run it alone on the machine (two cores).

    python benchmarks/overhead.py --epochs 30 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning.pytorch.loggers import TensorBoardLogger

from fld_train import FakeLabelDiscovery, RelabeledDataset, TensorBoardOptions
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise


def _time_fit(x, labels, callbacks, epochs: int, log_dir: str) -> float:
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(labels)))
    logger = TensorBoardLogger(log_dir, name="overhead")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=logger, callbacks=callbacks,
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
    noisy, mask = inject_noise(y, 10, rate=0.2, seed=0)
    with tempfile.TemporaryDirectory() as log_dir:
        _time_fit(x, noisy, [], 1, log_dir)  # warm-up: imports, allocator
        times: dict[str, list[float]] = {"plain": [], "counts": [], "full": []}
        for _ in range(args.repeats):
            times["plain"].append(_time_fit(x, noisy, [], args.epochs, log_dir))
            fld = FakeLabelDiscovery(10, check_every_n_epochs=args.check_every, action=args.action,
                                     tensorboard=False)
            times["counts"].append(_time_fit(x, noisy, [fld], args.epochs, log_dir))
            fld = FakeLabelDiscovery(10, check_every_n_epochs=args.check_every, action=args.action,
                                     noise_mask=mask, tensorboard=TensorBoardOptions(image_shape=(8, 8)))
            times["full"].append(_time_fit(x, noisy, [fld], args.epochs, log_dir))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"digits, {len(y)} samples, {args.epochs} epochs, check every {args.check_every}, "
          f"action={args.action}, torch threads={args.threads}, median of {args.repeats}")
    print("| run | wall time (s) | ratio to plain |\n|---|---|---|")
    print(f"| plain training | {med['plain']:.2f} | 1.000 |")
    print(f"| with FakeLabelDiscovery, counts only | {med['counts']:.2f} | {med['counts'] / med['plain']:.3f} |")
    print(f"| with FakeLabelDiscovery, full TensorBoard | {med['full']:.2f} | {med['full'] / med['plain']:.3f} |")


if __name__ == "__main__":
    main()
