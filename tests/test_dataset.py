import csv

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fld_train import RelabeledDataset


def _base(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n) % 3)


class PairsOnly(Dataset):
    """A dataset with no label attribute: labels must be read item by item."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return torch.zeros(2), i % 2


def test_items_carry_current_label_and_index():
    ds = RelabeledDataset(_base())
    x, y, i = ds[4]
    assert (float(x), y, i) == (4.0, 1, 4)
    assert len(ds) == 10


@pytest.mark.parametrize(
    "base",
    [_base(), PairsOnly(), type("T", (PairsOnly,), {"targets": [0, 1, 0, 1]})()],
    ids=["tensors", "indexed", "targets"],
)
def test_labels_are_read_from_any_base(base):
    ds = RelabeledDataset(base)
    expected = [base[i][1] for i in range(len(base))]
    np.testing.assert_array_equal(ds.original_labels, [int(v) for v in expected])


def test_overrides_change_items_but_never_the_original_labels():
    ds = RelabeledDataset(_base())
    assert ds.set_labels([1, 2], [0, 0], epoch=3, reason="test") == 2
    assert ds[1][1] == 0 and ds[2][1] == 0
    np.testing.assert_array_equal(ds.original_labels, np.arange(10) % 3)
    np.testing.assert_array_equal(ds.relabeled_indices, [1, 2])
    ds.original_labels[:] = 7  # a copy: cannot be corrupted from outside
    assert ds.original_labels[0] == 0


def test_audit_trail_records_every_change():
    ds = RelabeledDataset(_base())
    ds.set_labels([1, 3], [2, 0], epoch=2, reason=["a", "b"])  # index 3 already has label 0
    ds.set_weights([5], 0.25, epoch=4, reason="w")
    log = ds.audit_log
    assert [(c.index, c.field, c.old, c.new, c.epoch, c.reason) for c in log] == [
        (1, "label", 1, 2, 2, "a"),
        (5, "weight", 1.0, 0.25, 4, "w"),
    ]


def test_revert_restores_original_and_is_audited(tmp_path):
    ds = RelabeledDataset(_base())
    ds.set_labels([1, 2], [0, 0], epoch=1)
    ds.set_weights([2, 3], [0.5, 0.0], epoch=1)
    assert ds.revert([1, 3], epoch=5) == 2
    assert ds[1][1] == 1 and ds[2][1] == 0
    np.testing.assert_array_equal(ds.weights[[2, 3]], [0.5, 1.0])
    assert ds.revert() == 2
    np.testing.assert_array_equal(ds.current_labels, ds.original_labels)
    np.testing.assert_array_equal(ds.weights, 1.0)
    reverts = [c for c in ds.audit_log if c.reason == "revert"]
    assert len(reverts) == 4 and {c.epoch for c in reverts} == {5, -1}
    ds.write_audit_csv(tmp_path / "audit.csv")
    with open(tmp_path / "audit.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(ds.audit_log) and rows[0]["field"] == "label"


def test_state_dict_round_trip_keeps_the_shared_tensors():
    ds = RelabeledDataset(_base())
    ds.set_labels([0], [2], epoch=1, reason="r")
    ds.set_weights([1], 0.5)
    other = RelabeledDataset(_base())
    shared = other._labels
    other.load_state_dict(ds.state_dict())
    assert other._labels is shared  # restored in place: workers keep seeing the same memory
    np.testing.assert_array_equal(other.current_labels, ds.current_labels)
    np.testing.assert_array_equal(other.weights, ds.weights)
    assert other.audit_log == ds.audit_log


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_see_overrides_from_the_next_epoch(context):
    ds = RelabeledDataset(_base(8))
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True,
                        multiprocessing_context=context)
    first = torch.cat([y for _, y, _ in loader])
    np.testing.assert_array_equal(first.numpy(), np.arange(8) % 3)
    ds.set_labels(np.arange(8), np.full(8, 2))
    second = torch.cat([y for _, y, _ in loader])
    np.testing.assert_array_equal(second.numpy(), 2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda ds: ds.set_labels([10], [0]), IndexError, "`indices` must lie in \\[0, 10\\), got 10"),
        (lambda ds: ds.set_labels([1, 1], [0, 0]), ValueError, "must not repeat"),
        (lambda ds: ds.set_labels([1], [5]), ValueError, "outside \\[0, num_classes=3\\)"),
        (lambda ds: ds.set_labels([1, 2], [0]), ValueError, "`labels` must have length 2"),
        (lambda ds: ds.set_labels([1, 2], [0, 0], reason=["x"]), ValueError, "`reason` must be"),
        (lambda ds: ds.set_weights([1], 1.5), ValueError, "`weights` must be in \\[0.0, 1.0\\]"),
        (lambda ds: ds.set_weights([1], float("nan")), ValueError, "finite"),
    ],
)
def test_bad_changes_are_refused_and_lose_nothing(call, error, match):
    ds = RelabeledDataset(_base(), num_classes=3)
    ds.set_labels([0], [1])
    before = (ds.current_labels, ds.weights, ds.audit_log)
    with pytest.raises(error, match=match):
        call(ds)
    np.testing.assert_array_equal(ds.current_labels, before[0])
    np.testing.assert_array_equal(ds.weights, before[1])
    assert ds.audit_log == before[2]


def test_constructor_errors_name_the_problem():
    with pytest.raises(TypeError, match="map-style dataset"):
        RelabeledDataset(iter([1, 2]))
    with pytest.raises(ValueError, match="`labels` must have length 10, got 3"):
        RelabeledDataset(_base(), labels=[0, 1, 2])
    with pytest.raises(ValueError, match="outside \\[0, num_classes=2\\)"):
        RelabeledDataset(_base(), num_classes=2)
    with pytest.raises(ValueError, match="must hold integers"):
        RelabeledDataset(_base(3), labels=[0.5, 1.0, 2.0])


def test_weights_version_counts_real_weight_writes():
    ds = RelabeledDataset(_base())
    start = ds.weights_version
    ds.set_weights([1, 2], 1.0)  # no change
    assert ds.weights_version == start
    ds.set_weights([1, 2], 0.5)
    assert ds.weights_version == start + 1
    other = RelabeledDataset(_base())
    other.load_state_dict(ds.state_dict())
    assert other.weights_version > 0 and other.has_reduced_weights
