"""``fld-train fit``: clean the labels of an ImageFolder dataset from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from fld_train.callback import FakeLabelDiscovery
from fld_train.dataset import RelabeledDataset
from fld_train.report import LabelReport
from fld_train.vision import MODELS, build_model, image_folder_dataset


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_image_folder` wrote."""

    report: LabelReport
    report_csv: Path
    audit_csv: Path
    review_queue: Path
    tensorboard_dir: Path


def fit_image_folder(
    data_dir: str | Path,
    out: str | Path,
    *,
    model: str = "small-cnn",
    epochs: int = 30,
    action: str = "flag",
    check_every: int = 2,
    batch_size: int = 128,
    image_size: int | None = None,
    limit_batches: int | None = None,
    workers: int = 2,
    accelerator: str = "auto",
    progress_bar: bool = True,
    seed: int = 0,
) -> FitResult:
    """Train ``model`` on the ImageFolder at ``data_dir`` with :class:`~fld_train.FakeLabelDiscovery`.

    Writes ``label_report.csv``, ``audit_log.csv``, ``review/review_queue.csv`` (and ``.jsonl``) and a
    TensorBoard run under ``out``. ``seed`` seeds Lightning (model initialisation, shuffling).
    """
    out = Path(out)
    pl.seed_everything(seed, verbose=False)
    base = image_folder_dataset(data_dir, image_size or MODELS.get(model, 32))
    classes = base.classes
    network = build_model(model, len(classes))
    train_set = RelabeledDataset(base, labels=base.targets, num_classes=len(classes))
    fld = FakeLabelDiscovery(len(classes), check_every_n_epochs=check_every, action=action,
                             report_dir=out)
    logger = TensorBoardLogger(str(out), name="tensorboard")
    trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, callbacks=[fld], logger=logger,
                         default_root_dir=str(out), limit_train_batches=limit_batches,
                         enable_progress_bar=progress_bar, enable_checkpointing=True)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    trainer.fit(network, loader)
    report = fld.report()
    queue, _ = report.review_queue(out / "review", paths=[path for path, _ in base.samples])
    return FitResult(report, out / "label_report.csv", out / "audit_log.csv", queue,
                     Path(logger.log_dir))
