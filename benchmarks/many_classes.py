"""Many classes: does the licence for diffuse noise tell clean labels from symmetric noise?

A generated problem (scikit-learn's ``make_classification``: one Gaussian cluster per class, no
download) with ``--classes`` classes, trained with an MLP once plainly and once with the callback
(``action="relabel"``, the defaults otherwise). Per check it prints the estimated flips'
concentration, what it would be by chance were they spread over all other classes alike
(:func:`fld_train.confident.chance_flip_concentration`), whether the check found them diffuse, and
how many samples were down-weighted; at the end the test accuracy of both trainings.

    python benchmarks/many_classes.py --classes 100 --noise none:0 symmetric:0.2 symmetric:0.4 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.datasets import make_classification
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import make_trainer, quiet_torch  # a sibling script

from fld_train import FakeLabelDiscovery, RelabeledDataset, scoring
from fld_train.demo import MLPClassifier
from fld_train.noise import inject_noise


@dataclass(frozen=True)
class Problem:
    """A generated training and test set."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


@dataclass(frozen=True)
class CheckRow:
    """One check of the relabel run."""

    epoch: int
    concentration: float
    chance: float
    diffuse: bool
    flagged: int
    downweighted: int


def make_problem(num_classes: int, samples: int, class_sep: float, seed: int = 0) -> Problem:
    """``samples`` points in 40 dimensions (30 informative), one cluster per class, a fifth held out
    for testing; features standardised."""
    x, y = make_classification(n_samples=samples, n_features=40, n_informative=30, n_redundant=0,
                               n_classes=num_classes, n_clusters_per_class=1, class_sep=class_sep,
                               random_state=seed)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    cut = samples // 5
    return Problem(x[cut:], y[cut:].astype(np.int64), x[:cut], y[:cut].astype(np.int64), num_classes)


class _Recording(FakeLabelDiscovery):
    """The callback, keeping a :class:`CheckRow` of every check."""

    def __init__(self, num_classes: int, **options) -> None:
        super().__init__(num_classes, **options)
        self.rows: list[CheckRow] = []

    def _evaluate(self) -> scoring.Evaluation:
        ev = super()._evaluate()
        self.rows.append(CheckRow(
            epoch=int(self.store.last_epoch.max()), concentration=ev.flip_concentration,
            chance=getattr(ev, "chance_concentration", float("nan")), diffuse=ev.diffuse_flips,
            flagged=int(ev.flagged.sum()), downweighted=int((ev.decisions == scoring.DOWNWEIGHT).sum()),
        ))
        return ev


def train(problem: Problem, labels: np.ndarray, seed: int, epochs: int,
          callback: FakeLabelDiscovery | None = None) -> float:
    """Train the MLP on ``labels`` (with ``callback``, if any); its clean test accuracy."""
    pl.seed_everything(seed, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(problem.x), torch.from_numpy(labels)))
    model = MLPClassifier(problem.x.shape[1], problem.num_classes, hidden=256)
    make_trainer(epochs, [] if callback is None else [callback]).fit(
        model, DataLoader(ds, batch_size=128, shuffle=True))
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(problem.x_test)).argmax(dim=1).numpy()
    return float(np.mean(predicted == problem.y_test))


def run_setting(problem: Problem, spec: str, seed: int, epochs: int, every: int) -> tuple[list[CheckRow], float, float]:
    """``(check rows, test accuracy with the callback, plain training's)`` for one ``kind:rate``."""
    kind, rate = spec.split(":")
    labels = problem.y.copy()
    if float(rate) > 0:
        labels, _ = inject_noise(problem.y, problem.num_classes, rate=float(rate), kind=kind, seed=seed)
    fld = _Recording(problem.num_classes, check_every_n_epochs=every, action="relabel", tensorboard=False)
    with_callback = train(problem, labels, seed, epochs, fld)
    return fld.rows, with_callback, train(problem, labels, seed, epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=25000)
    parser.add_argument("--class-sep", type=float, default=1.5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--check-every", type=int, default=4)
    parser.add_argument("--noise", nargs="+", default=["none:0", "symmetric:0.2", "symmetric:0.4"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    quiet_torch(args.threads)
    problem = make_problem(args.classes, args.samples, args.class_sep)
    for spec in args.noise:
        rows, acc, plain = run_setting(problem, spec, args.seed, args.epochs, args.check_every)
        print(f"\n{args.classes} classes, {spec}, seed {args.seed}")
        print("| epoch | concentration | by chance | diffuse | flagged | down-weighted |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r.epoch} | {r.concentration:.3f} | {r.chance:.3f} | {'yes' if r.diffuse else 'no'} "
                  f"| {r.flagged} | {r.downweighted} |")
        print(f"test accuracy {acc:.3f} with the callback, {plain:.3f} plain training")


if __name__ == "__main__":
    main()
