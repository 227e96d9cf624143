"""Distributed data parallel on two processes (``devices=2``): one report, identical on every rank.

On CPUs this starts two processes with ``ddp_spawn``; on a machine with GPUs use
``--accelerator gpu --strategy ddp``. Each rank sees half of every epoch (DistributedSampler,
which Lightning inserts); the callback gathers what the ranks saw, so the store counts every sample
once per epoch and rank 0's decisions reach every rank. With spawned processes the callback's state
stays in the workers: the report is written by rank 0 to ``--out`` (``report_dir``).

    python examples/ddp.py --epochs 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, LabelReport, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--strategy", default="ddp_spawn")
    parser.add_argument("--out", default="fld_runs/ddp")
    args = parser.parse_args(argv)

    x, y_true, _, _ = load_digits_split(seed=0)
    y_noisy, noise_mask = inject_noise(y_true, 10, rate=0.2, seed=0)
    train_set = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(y_noisy)))
    fld = FakeLabelDiscovery(num_classes=10, check_every_n_epochs=2, action="relabel",
                             report_dir=args.out)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
                        strategy=args.strategy, callbacks=[fld], default_root_dir=args.out,
                        enable_progress_bar=False, log_every_n_steps=5)
    trainer.fit(MLPClassifier(64, 10), DataLoader(train_set, batch_size=64, shuffle=True))

    report = LabelReport.from_csv(Path(args.out) / "label_report.csv")  # written by rank 0
    m = report.detection(noise_mask)
    print(f"{args.devices} processes: precision {m.precision:.3f} recall {m.recall:.3f} F1 {m.f1:.3f} "
          f"AUROC {m.auroc:.3f}; audit trail in {args.out}/audit_log.csv")
    return {"f1": m.f1, "auroc": m.auroc}


if __name__ == "__main__":
    main()
