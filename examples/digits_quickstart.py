"""Quickstart on scikit-learn's bundled digits (no download): find and fix 20% wrong labels.

    python examples/digits_quickstart.py --epochs 40
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="fld_runs/quickstart")
    args = parser.parse_args(argv)

    x, y_true, _, _ = load_digits_split(seed=0)
    y_noisy, noise_mask = inject_noise(y_true, 10, rate=0.2, seed=0)
    base = TensorDataset(torch.from_numpy(x), torch.from_numpy(y_noisy))  # base[i] -> (x, y)

    train_set = RelabeledDataset(base)  # train_set[i] -> (x, y_now, i)
    fld = FakeLabelDiscovery(num_classes=10, check_every_n_epochs=2, action="relabel")
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[fld], default_root_dir=args.out,
                        enable_progress_bar=False, log_every_n_steps=10)
    trainer.fit(MLPClassifier(64, 10), DataLoader(train_set, batch_size=64, shuffle=True))

    report = fld.report()
    report.to_csv(f"{args.out}/label_report.csv")
    m = report.detection(noise_mask)
    print(f"flagged {m.flagged} of {len(report)}; precision {m.precision:.3f} recall {m.recall:.3f} "
          f"F1 {m.f1:.3f} AUROC {m.auroc:.3f}")
    print(f"relabels that restored the true label: {report.correction_accuracy(y_true):.1%}")
    print(f"report: {args.out}/label_report.csv; tensorboard --logdir {args.out}/lightning_logs")


if __name__ == "__main__":
    main()
