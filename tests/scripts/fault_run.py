"""Training run used by tests/test_fault.py: digits, relabel, checkpoint every epoch, report files.

    python tests/scripts/fault_run.py --out DIR [--slow] [--resume CKPT]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise


class Progress(pl.Callback):
    def __init__(self, slow: bool) -> None:
        self.slow = slow

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        print(f"epoch {trainer.current_epoch} batch {batch_idx}", flush=True)
        if self.slow:
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--resume", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    x, y, _, _ = load_digits_split(seed=0)
    noisy, _ = inject_noise(y, 10, rate=0.2, seed=0)
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    fld = FakeLabelDiscovery(10, check_every_n_epochs=1, action="relabel", report_dir=f"{args.out}/report")
    ckpt = ModelCheckpoint(dirpath=f"{args.out}/ckpt", save_last=True, save_top_k=-1, every_n_epochs=1)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False,
                         callbacks=[fld, ckpt, Progress(args.slow)], enable_progress_bar=False,
                         enable_model_summary=False, deterministic=True)
    trainer.fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64, sampler=sampler), ckpt_path=args.resume)
    np.savez(f"{args.out}/final.npz", labels=ds.current_labels, weights=ds.weights,
             prob_sum=fld.store.prob_sum, seen_epochs=fld.store.seen_epochs,
             flagged=fld.report().flagged,
             audit=np.array([(c.index, c.old, c.new, c.epoch) for c in ds.audit_log]))


if __name__ == "__main__":
    main()
