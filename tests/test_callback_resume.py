"""Checkpoint and resume: a run interrupted at epoch 2 and resumed to 4 equals an uninterrupted one."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise

pytestmark = pytest.mark.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

STORE_FIELDS = ("seen_epochs", "last_epoch", "prob_sum", "prob_sq_sum", "margin_sum", "top_classes",
                "top_prob_sum",
                "first_learned_epoch", "forgetting_events", "embeddings")


@pytest.fixture(scope="module")
def data():
    x, y, _, _ = load_digits_split(seed=0)
    noisy, _ = inject_noise(y, 10, rate=0.2, seed=0)
    return x, noisy


def _run(data, max_epochs, *, ckpt_dir=None, ckpt_path=None, check_every=1):
    x, noisy = data
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    # an epoch-seeded sampler, so the resumed epochs see the same order as the uninterrupted ones
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    fld = FakeLabelDiscovery(10, check_every_n_epochs=check_every, action="relabel")
    callbacks = [fld]
    if ckpt_dir is not None:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0))
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, callbacks=callbacks,
                         enable_checkpointing=ckpt_dir is not None, enable_progress_bar=False,
                         enable_model_summary=False, deterministic=True)
    trainer.fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64, sampler=sampler), ckpt_path=ckpt_path)
    return fld, ds


@pytest.mark.parametrize("check_every", [1, 2])
def test_resume_equals_an_uninterrupted_run(data, tmp_path, check_every):
    full, full_ds = _run(data, 4, check_every=check_every)
    _run(data, 2, ckpt_dir=tmp_path, check_every=check_every)
    resumed, resumed_ds = _run(data, 4, ckpt_path=tmp_path / "last.ckpt", check_every=check_every)

    np.testing.assert_array_equal(resumed.store.seen_epochs, 4)  # no epoch counted twice
    for name in STORE_FIELDS:
        np.testing.assert_array_equal(getattr(resumed.store, name), getattr(full.store, name), err_msg=name)
    a, b = full.report(), resumed.report()
    np.testing.assert_array_equal(a.flagged, b.flagged)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(full_ds.current_labels, resumed_ds.current_labels)
    assert full_ds.audit_log == resumed_ds.audit_log and len(full_ds.audit_log) > 0
    assert resumed._last_check_epoch == 3


def test_checkpoint_without_newer_keys_still_loads(data, tmp_path):
    _run(data, 2, ckpt_dir=tmp_path)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    key = next(k for k in ckpt["callbacks"] if k.startswith("FakeLabelDiscovery"))
    state = ckpt["callbacks"][key]
    del state["dataset"], state["store"]["forgetting_events"], state["store"]["embeddings"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    fld, _ = _run(data, 3, ckpt_path=tmp_path / "old.ckpt")
    np.testing.assert_array_equal(fld.store.seen_epochs, 3)
    assert fld.report().epoch == 2


def test_checkpoint_loads_with_weights_only(data, tmp_path):
    _run(data, 1, ckpt_dir=tmp_path)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert any(k.startswith("FakeLabelDiscovery") for k in ckpt["callbacks"])
