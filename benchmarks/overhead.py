"""Wall-time cost of the callback: the same training with and without FakeLabelDiscovery.

Three trainings run in this one process, in turn, ``--repeats`` times each, all logging to
TensorBoard: plain, with the callback writing counts only (``tensorboard=False``), and with the
callback writing everything (histograms, PR curve, images, text, projector at the end). The table
reports the median wall time of each and the ratios to plain. Run it alone on the machine (two cores).

Two workloads: ``--model mlp`` (digits, a tiny MLP: the callback's worst case, since the model costs
almost nothing) and ``--model cnn`` (a small CNN on CIFAR-sized images: ``--data-dir`` an ImageFolder
such as ../shared/data/cifar10/train, decoded into memory once; ``--subset`` images of it).

    python benchmarks/overhead.py --epochs 30 --repeats 3 --threads 1
    python benchmarks/overhead.py --model cnn --data-dir ../shared/data/cifar10/train --subset 20000 \
        --epochs 4 --repeats 1 --threads 2 --action flag
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
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset, TensorBoardOptions
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise
from fld_train.vision import SmallCNN, load_image_folder


def _time_fit(x, labels, callbacks, epochs: int, log_dir: str, make_model, batch_size: int) -> float:
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.as_tensor(x), torch.from_numpy(labels)))
    logger = TensorBoardLogger(log_dir, name="overhead")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=logger, callbacks=callbacks,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    model = make_model()
    start = time.perf_counter()
    trainer.fit(model, DataLoader(ds, batch_size=batch_size, shuffle=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-every", type=int, default=2)
    parser.add_argument("--action", default="relabel", choices=["flag", "relabel", "downweight"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--data-dir", help="ImageFolder root for --model cnn (e.g. cifar10/train)")
    parser.add_argument("--subset", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    if args.model == "mlp":
        x, y, _, _ = load_digits_split(0)
        name, batch_size, image_shape = "digits (MLP)", 64, (8, 8)
        def make_model():
            return MLPClassifier(x.shape[1], 10)
    else:
        if not args.data_dir:
            parser.error("--model cnn needs --data-dir (an ImageFolder root such as cifar10/train)")
        x, y, _ = load_image_folder(args.data_dir, subset=args.subset, seed=0)
        name, batch_size, image_shape = f"{args.data_dir} (small CNN)", 128, None
        def make_model():
            return SmallCNN(10)
    noisy, mask = inject_noise(y, 10, rate=0.2, seed=0)
    with tempfile.TemporaryDirectory() as log_dir:
        def fit(callbacks, epochs):
            return _time_fit(x, noisy, callbacks, epochs, log_dir, make_model, batch_size)

        fit([], 1)  # warm-up: imports, allocator
        times: dict[str, list[float]] = {"plain": [], "counts": [], "full": []}
        for _ in range(args.repeats):
            times["plain"].append(fit([], args.epochs))
            fld = FakeLabelDiscovery(10, check_every_n_epochs=args.check_every, action=args.action,
                                     tensorboard=False)
            times["counts"].append(fit([fld], args.epochs))
            fld = FakeLabelDiscovery(10, check_every_n_epochs=args.check_every, action=args.action,
                                     noise_mask=mask, tensorboard=TensorBoardOptions(image_shape=image_shape))
            times["full"].append(fit([fld], args.epochs))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}, {len(y)} samples, {args.epochs} epochs, check every {args.check_every}, "
          f"action={args.action}, torch threads={args.threads}, median of {args.repeats}")
    print("| run | wall time (s) | ratio to plain |\n|---|---|---|")
    print(f"| plain training | {med['plain']:.2f} | 1.000 |")
    print(f"| with FakeLabelDiscovery, counts only | {med['counts']:.2f} | {med['counts'] / med['plain']:.3f} |")
    print(f"| with FakeLabelDiscovery, full TensorBoard | {med['full']:.2f} | {med['full'] / med['plain']:.3f} |")


if __name__ == "__main__":
    main()
