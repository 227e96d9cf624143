"""The callback under Trainer options users combine it with."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.capture import HeadCapture
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise

pytestmark = pytest.mark.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def data():
    x, y, _, _ = load_digits_split(seed=0)
    noisy, mask = inject_noise(y, 10, rate=0.2, seed=0)
    return x, noisy, mask


def _fit(data, model=None, epochs=4, action="relabel", **trainer_kwargs):
    x, noisy, _ = data
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action=action)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[fld],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **trainer_kwargs)
    trainer.fit(model if model is not None else MLPClassifier(64, 10), DataLoader(ds, batch_size=64, shuffle=True))
    return fld, ds


def test_limit_train_batches_reports_unseen_samples(data):
    fld, _ = _fit(data, epochs=1, limit_train_batches=5)
    report = fld.report()
    seen = fld.store.seen
    assert seen.sum() == 5 * 64
    assert np.all(report.decisions[~seen] == "unseen")
    assert not report.flagged[~seen].any() and np.all(report.scores[~seen] == 0)


def test_gradient_accumulation_sees_every_sample_once_per_epoch(data):
    fld, _ = _fit(data, accumulate_grad_batches=3)
    np.testing.assert_array_equal(fld.store.seen_epochs, 4)
    assert fld.report().detection(data[2]).auroc > 0.9


def test_bf16_mixed_precision(data):
    fld, ds = _fit(data, precision="bf16-mixed")
    assert fld.store.embeddings.dtype == np.float16 and np.isfinite(fld.store.prob_sum).all()
    assert fld.report().detection(data[2]).auroc > 0.9
    assert ds.relabeled_indices.size > 0


def test_torch_compiled_model(data):
    model = torch.compile(MLPClassifier(64, 10), backend="eager")
    fld, ds = _fit(data, model=model, action="downweight")
    np.testing.assert_array_equal(fld.store.seen_epochs, 4)
    assert (ds.weights < 1).sum() > 100
    assert fld.report().detection(data[2]).auroc > 0.9


def test_gradient_weights_survive_torch_compile():
    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    w = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.25, 1.0])
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ref.load_state_dict(net.state_dict())
    cap = HeadCapture(net[2])
    compiled = torch.compile(net, backend="eager")
    cap.arm(6, w)
    nn.functional.cross_entropy(compiled(x), y).backward()
    assert cap.take() is not None
    (nn.functional.cross_entropy(ref(x), y, reduction="none") * w).mean().backward()
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
