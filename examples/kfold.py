"""K-fold mode on digits: five fits on five folds, out-of-fold signals plus training dynamics.

The careful, expensive mode (five trainings); compare with the single run of digits_quickstart.py.

    python examples/kfold.py --folds 5 --epochs 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import TensorDataset

from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.folds import kfold_discovery
from fld_train.noise import inject_noise


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="fld_runs/kfold")
    args = parser.parse_args(argv)

    x, y_true, _, _ = load_digits_split(seed=0)
    y_noisy, noise_mask = inject_noise(y_true, 10, rate=0.2, seed=0)
    base = TensorDataset(torch.from_numpy(x), torch.from_numpy(y_noisy))

    def make_trainer(callbacks):
        return L.Trainer(max_epochs=args.epochs, callbacks=callbacks, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)

    result = kfold_discovery(lambda: MLPClassifier(64, 10), base, num_classes=10, folds=args.folds,
                             make_trainer=make_trainer, batch_size=64)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result.report.to_csv(Path(args.out) / "label_report.csv")
    m = result.report.detection(noise_mask)
    print(f"{args.folds}-fold: flagged {m.flagged} of {len(result.report)}; precision {m.precision:.3f} "
          f"recall {m.recall:.3f} F1 {m.f1:.3f} AUROC {m.auroc:.3f}")
    print(f"misclassified in every fit: {int((result.fold_misclassified == args.folds).sum())} samples")
    return {"f1": m.f1, "auroc": m.auroc}


if __name__ == "__main__":
    main()
