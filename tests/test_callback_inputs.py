"""Bad input at the edges of the callback, numerical faults, and tiny or odd datasets."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import MLPClassifier

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore:.*(workers|LeafSpec|log_every_n_steps).*")


def _blobs(n: int, num_classes: int = 3, seed: int = 0, counts: list[int] | None = None):
    """Gaussian blobs in 8-d: class j centred on 4 * e_j."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), counts) if counts else rng.integers(0, num_classes, n)
    x = rng.normal(size=(y.size, 8)).astype(np.float32)
    x[np.arange(y.size), y % 8] += 4.0
    return x, y.astype(np.int64)


def _fit(ds, fld, *, model=None, epochs=2, batch_size=16):
    pl.seed_everything(0, verbose=False)
    model = model if model is not None else MLPClassifier(8, fld.num_classes, hidden=16)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[fld],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, DataLoader(ds, batch_size=batch_size, shuffle=True))
    return trainer


def _indexed(x, y):
    return TensorDataset(torch.from_numpy(x), torch.as_tensor(y), torch.arange(len(y)))


# ---------------------------------------------------------------- bad input: clear errors
def test_float_labels_in_the_batch():
    x, y = _blobs(40)
    with pytest.raises(ValueError, match="batch\\[1\\] \\(`y`\\) to be a 1-D integer tensor.*float32"):
        _fit(_indexed(x, y.astype(np.float32)), FakeLabelDiscovery(3, action="flag"))


def test_negative_labels_in_the_batch():
    x, y = _blobs(40)
    y[3] = -1
    with pytest.raises(ValueError, match="label -1 \\(sample index 3\\) is outside \\[0, num_classes=3\\)"):
        _fit(_indexed(x, y), FakeLabelDiscovery(3, action="flag"), batch_size=40)


def test_num_classes_that_does_not_match_the_named_head():
    x, y = _blobs(40)
    with pytest.raises(ValueError, match="head 'head' has out_features=3 but num_classes=5"):
        _fit(RelabeledDataset(list(zip(x, y))), FakeLabelDiscovery(5, head="head", action="flag"),
             model=MLPClassifier(8, 3, hidden=16))


def test_iterable_dataset_is_refused_by_the_wrapper():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(2), 0

    with pytest.raises(TypeError, match="iterable dataset Stream.*action='flag'"):
        RelabeledDataset(Stream())


def test_duplicate_indices_in_a_batch_warn_once_and_count_once():
    x, y = _blobs(30)
    idx = torch.arange(30)
    idx[1] = 0  # sample 0 twice in the dataset's index column
    ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y), idx)
    fld = FakeLabelDiscovery(3, check_every_n_epochs=1, action="flag")
    with pytest.warns(UserWarning, match="same sample index more than once") as record:
        _fit(ds, fld, epochs=2, batch_size=30)
    assert sum("same sample index" in str(w.message) for w in record) == 1
    assert fld.store.seen_epochs[0] == 2 and fld.store.seen_epochs[1] == 0


# ---------------------------------------------------------------- numerical faults
class SometimesNaN(MLPClassifier):
    """The head emits NaN for inputs whose first feature is huge; the loss leaves those rows out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bad = None
        self.head.register_forward_hook(  # runs before fld's hook, which then sees the NaN
            lambda module, inputs, out: torch.where(self._bad, torch.full_like(out, float("nan")), out))

    def forward(self, x):
        self._bad = x[:, :1] > 100
        return super().forward(x)

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self(x)
        ok = torch.isfinite(logits).all(dim=1)
        return F.cross_entropy(logits[ok], y[ok]) if ok.any() else logits.nan_to_num().sum() * 0


def test_nan_logits_are_skipped_counted_and_warned_once():
    x, y = _blobs(60)
    x[[5, 17], 0] = 1e6
    fld = FakeLabelDiscovery(3, check_every_n_epochs=1, action="relabel")
    ds = RelabeledDataset(list(zip(x, y)))
    with pytest.warns(UserWarning, match="NaN or inf") as record:
        _fit(ds, fld, model=SometimesNaN(8, 3, hidden=16), epochs=3)
    assert sum("NaN or inf" in str(w.message) for w in record) == 1
    assert fld.store.nonfinite_rows == 6  # two samples, three epochs
    report = fld.report()
    assert list(report.decisions[[5, 17]]) == ["unseen", "unseen"]
    assert np.isfinite(report.scores).all() and np.isfinite(fld.store.prob_sum).all()


# ---------------------------------------------------------------- odd datasets
@pytest.mark.parametrize(
    ("name", "num_classes", "counts"),
    [
        ("fewer samples than k", 3, [2, 2, 1]),
        ("one class", 2, [30, 0]),
        ("an empty class", 4, [15, 15, 0, 10]),
        ("extreme imbalance", 3, [200, 1, 2]),
    ],
)
def test_odd_datasets_run_and_report(name, num_classes, counts):
    x, y = _blobs(0, num_classes, counts=counts)
    fld = FakeLabelDiscovery(num_classes, check_every_n_epochs=1, action="relabel", k=10)
    ds = RelabeledDataset(list(zip(x, y)), num_classes=num_classes)
    _fit(ds, fld, epochs=2)
    report = fld.report()
    assert len(report) == y.size and np.isfinite(report.scores).all()
    assert np.all((report.suggested_labels >= 0) & (report.suggested_labels < num_classes))
    np.testing.assert_array_equal(ds.original_labels, y)
    # no check may move more than half of one class at once (the default budget)
    moved = np.bincount(y[ds.current_labels != y], minlength=num_classes)
    assert np.all(moved <= np.floor(0.5 * np.bincount(y, minlength=num_classes)))
