"""Relabels made at a check reach the batches that already-running persistent workers produce."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise

pytestmark = pytest.mark.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


class BatchRecorder(pl.Callback):
    """Records the labels of every batch and the dataset's labels after each epoch's check."""

    def __init__(self, dataset: RelabeledDataset) -> None:
        self.dataset = dataset
        self.batches: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.labels_after_epoch: dict[int, np.ndarray] = {}
        self.worker_pids: set[int] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        _, y, idx = batch
        self.batches.append((trainer.current_epoch, idx.numpy().copy(), y.numpy().copy()))

    def on_train_epoch_end(self, trainer, pl_module):
        self.labels_after_epoch[trainer.current_epoch] = self.dataset.current_labels
        it = trainer.train_dataloader._iterator
        self.worker_pids.add(tuple(w.pid for w in it._workers))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_relabels_reach_persistent_workers_from_the_next_epoch(context):
    x, y, _, _ = load_digits_split(seed=0)
    noisy, _ = inject_noise(y, 10, rate=0.2, seed=0)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel")
    recorder = BatchRecorder(ds)  # after fld: sees the labels the check left
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=2, persistent_workers=True,
                        multiprocessing_context=context)
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_epochs=8, accelerator="cpu", logger=False, callbacks=[fld, recorder],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(MLPClassifier(64, 10), loader)

    assert len(recorder.worker_pids) == 1  # the same two worker processes served every epoch
    changed = [int(np.sum(recorder.labels_after_epoch[e] != noisy)) for e in range(7)]
    assert changed[0] == 0 and changed[6] > 50  # checks after epochs 1, 3, 5 relabeled samples
    for epoch, idx, labels in recorder.batches:
        expected = noisy if epoch == 0 else recorder.labels_after_epoch[epoch - 1]
        np.testing.assert_array_equal(labels, expected[idx], err_msg=f"epoch {epoch}")
