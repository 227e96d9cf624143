"""``monitor``: a check whose monitored value is not the best so far changes nothing."""

from __future__ import annotations

import logging
import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from fld_train import FakeLabelDiscovery, LabelReport, RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise
from fld_train.review import Review

pytestmark = pytest.mark.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


class ScheduledValidation(MLPClassifier):
    """Logs ``val_score`` = ``schedule[current_epoch]`` from ``validation_step``."""

    def __init__(self, schedule: list[float]) -> None:
        super().__init__(64, 10)
        self.schedule = schedule

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self.log("val_score", float(self.schedule[self.current_epoch]))


class Scalars(Logger):
    """Keeps every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "scalars"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((step or 0, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class Checks(pl.Callback):
    """Records, after each epoch, the report's check epoch and the dataset's labels and weights."""

    def __init__(self, fld: FakeLabelDiscovery) -> None:
        self.fld = fld
        self.epochs: list[int] = []
        self.labels: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(self.fld.report().epoch)
        self.labels.append(self.fld.dataset.current_labels.copy())
        self.weights.append(self.fld.dataset.weights.copy())


@pytest.fixture(scope="module")
def data():
    x, y, _, _ = load_digits_split(seed=0)
    noisy, _ = inject_noise(y, 10, rate=0.3, seed=0)
    return x, noisy


def _fit(data, schedule, *, mode="min", max_epochs=None, action="relabel", callbacks=(), logger=False,
         ckpt_path=None, checkpointing=False, **options):
    x, noisy = data
    pl.seed_everything(0, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    fld = FakeLabelDiscovery(10, check_every_n_epochs=1, action=action, monitor="val_score", mode=mode,
                             uncertain_action="downweight", tensorboard=False, **options)
    extra = [c(fld) if isinstance(c, type) else c for c in callbacks]
    trainer = pl.Trainer(max_epochs=max_epochs or len(schedule), accelerator="cpu", logger=logger,
                         callbacks=[fld, *extra], enable_checkpointing=checkpointing, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    val = DataLoader(TensorDataset(torch.from_numpy(x[:64]), torch.from_numpy(noisy[:64])), batch_size=64)
    trainer.fit(ScheduledValidation(schedule), DataLoader(ds, batch_size=64, sampler=sampler), val,
                ckpt_path=ckpt_path)
    return fld, ds, extra


@pytest.mark.parametrize(("mode", "schedule", "best"), [
    ("min", [3.0, 2.0, 1.0, 2.0, 1.0, 4.0], 2),  # a tie is not an improvement
    ("max", [1.0, 2.0, 5.0, 4.0, 5.0, 3.0], 2),
])
def test_checks_after_the_best_one_change_nothing(data, mode, schedule, best):
    fld, ds, (checks,) = _fit(data, schedule, mode=mode, callbacks=[Checks])
    # this epoch's validation is read at this epoch's check: the report follows the schedule exactly
    assert checks.epochs == [0, 1, 2, 2, 2, 2]
    assert fld.report().epoch == best and fld._last_check_epoch == len(schedule) - 1
    for labels, weights in zip(checks.labels[best:], checks.weights[best:]):
        np.testing.assert_array_equal(labels, checks.labels[best])
        np.testing.assert_array_equal(weights, checks.weights[best])
    assert not np.array_equal(checks.weights[0], checks.weights[best])  # the early checks did act
    assert max(change.epoch for change in ds.audit_log) == best


def test_without_monitor_every_check_acts(data):
    x, noisy = data
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    fld = FakeLabelDiscovery(10, check_every_n_epochs=1, action="flag", tensorboard=False)
    checks = Checks(fld)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[fld, checks],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64))
    assert checks.epochs == [0, 1, 2]


def test_a_nan_value_is_never_the_best(data):
    _, _, (checks,) = _fit(data, [2.0, math.nan, 1.0, math.nan], callbacks=[Checks], action="flag")
    assert checks.epochs == [0, 0, 2, 2]


def test_the_report_epoch_is_logged_at_every_check(data):
    logger = Scalars()
    _fit(data, [3.0, 1.0, 2.0], logger=logger, action="flag")
    epochs = [m["fld/report_epoch"] for _, m in logger.logged if "fld/report_epoch" in m]
    assert epochs == [0.0, 1.0, 1.0]


def test_a_missing_metric_names_itself_and_the_logged_ones(data):
    x, noisy = data
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    fld = FakeLabelDiscovery(10, action="flag", monitor="val_acc", tensorboard=False)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[fld],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError, match=r"monitor='val_acc'.*\['train_loss'\]"):
        trainer.fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"monitor": 3}, TypeError, r"`monitor` must be the name of a logged metric \(str\) or None, got 3"),
    ({"monitor": ""}, TypeError, r"`monitor`.*got ''"),
    ({"mode": "best"}, ValueError, r"`mode`.*'best'.*'min'.*'max'"),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        FakeLabelDiscovery(10, **kwargs)


def test_resume_after_the_best_check_keeps_its_report(data, tmp_path):
    schedule = [3.0, 1.0, 2.0, 2.5, 0.5]
    full, full_ds, _ = _fit(data, schedule[:4])
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    _fit(data, schedule, max_epochs=3, callbacks=[ckpt], checkpointing=True)
    # resumed after epoch 2 (whose check did not improve on epoch 1's): the report is there at once
    resumed, resumed_ds, (checks,) = _fit(data, schedule, max_epochs=4, callbacks=[Checks],
                                          ckpt_path=tmp_path / "last.ckpt")
    assert checks.epochs == [1]
    a, b = full.report(), resumed.report()
    assert a.epoch == b.epoch == 1
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.decisions, b.decisions)
    np.testing.assert_array_equal(full_ds.current_labels, resumed_ds.current_labels)
    assert resumed._best_score == 1.0


class ReviewAfter(pl.Callback):
    """Applies one reviewer decision (relabel sample 0 to class 9) at the start of ``epoch``."""

    def __init__(self, fld: FakeLabelDiscovery, epoch: int = 2) -> None:
        self.fld, self.epoch = fld, epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.fld.dataset.reapply_reviews([Review(0, "relabel", 9, int(self.fld.dataset.current_labels[0]),
                                                     self.epoch)], epoch=self.epoch)


def test_a_review_after_the_best_check_shows_in_the_report_and_its_files(data, tmp_path):
    fld, _, _ = _fit(data, [2.0, 1.0, 3.0], callbacks=[ReviewAfter], action="flag", report_dir=tmp_path)
    report = fld.report()
    assert report.epoch == 1  # the checks after epoch 1 did not improve
    assert report.decisions[0] == "reviewed" and report.current_labels[0] == 9
    assert [r.index for r in report.reviews] == [0]
    on_disk = LabelReport.from_csv(tmp_path / "label_report.csv")
    assert on_disk.decisions[0] == "reviewed" and on_disk.current_labels[0] == 9
    assert "review: relabel" in (tmp_path / "audit_log.csv").read_text()
