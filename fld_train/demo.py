"""The embedded demo: scikit-learn's bundled digits with injected label noise, no download.

Three trainings of the same small model on the same split: plain training on the noisy labels,
training with ``FakeLabelDiscovery(action="relabel")``, and training on the clean labels (the
ceiling). The fld-train run's report is scored against the injected noise.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from fld_train._validation import check_int, check_positive
from fld_train.callback import FakeLabelDiscovery
from fld_train.dataset import RelabeledDataset
from fld_train.metrics import DetectionMetrics
from fld_train.noise import inject_noise
from fld_train.report import LabelReport
from fld_train.tensorboard import TensorBoardOptions


class _Classifier(pl.LightningModule):
    """Cross-entropy on ``(x, y, idx)`` batches (the index is the callback's), Adam at ``self.lr``.

    Subclasses pass their ``num_classes`` and ``lr`` up, checked here, and build their layers.
    """

    def __init__(self, num_classes: int, lr: float) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.lr = check_positive("lr", lr, hint="It is Adam's learning rate.")

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _idx = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Logs ``val_loss`` and ``val_acc`` on ``(x, y)`` or ``(x, y, idx)`` batches."""
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class MLPClassifier(_Classifier):
    """A small MLP whose ``training_step`` reads ``(x, y, idx)`` batches; ``self.head`` is the classifier.

    Args:
        in_features: input size.
        num_classes: number of classes.
        hidden: width of the two hidden layers.
        lr: Adam learning rate.

    Raises:
        TypeError, ValueError: a size that is not a positive int (``num_classes >= 2``) or ``lr`` not
            a float > 0; the message names the argument.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, lr: float = 1e-3) -> None:
        super().__init__(num_classes, lr)
        in_features = check_int("in_features", in_features, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Conv1dClassifier(_Classifier):
    """A small 1-D CNN for sequences (e.g. MNIST-1D), with the same batches and ``self.head`` as
    :class:`MLPClassifier`.

    Args:
        length: sequence length (inputs are ``(batch, length)``).
        num_classes: number of classes.
        width: channels of the three convolutions.
        lr: Adam learning rate.

    Raises:
        TypeError, ValueError: as :class:`MLPClassifier`.
    """

    def __init__(self, length: int, num_classes: int, width: int = 32, lr: float = 2e-3) -> None:
        super().__init__(num_classes, lr)
        length = check_int("length", length, minimum=1)
        width = check_int("width", width, minimum=1)
        self.features = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=2), nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2), nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        out_length = (((length + 1) // 2) + 1) // 2  # two stride-2 convolutions with padding 2
        self.fc = nn.Linear(width * out_length, 128)
        self.head = nn.Linear(128, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc(self.features(x.unsqueeze(1)))))


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` measured."""

    detection: DetectionMetrics
    relabeled: int
    relabel_accuracy: float
    downweighted: int
    test_accuracy_plain: float
    test_accuracy_fld: float
    test_accuracy_clean: float
    report: LabelReport
    report_csv: Path
    review_queue: Path
    tensorboard_dir: Path
    seconds: float


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 in [0, 1], split 80/20 stratified: ``(x_train, y_train, x_test, y_test)``."""
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    return x_tr, y_tr, x_te, y_te


def _trainer(max_epochs: int, callbacks: list[pl.Callback], logger: TensorBoardLogger | bool) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=True, num_sanity_val_steps=0, log_every_n_steps=10,
    )


def _fit(
    x: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int, callbacks: list[pl.Callback],
    logger: TensorBoardLogger | bool = False,
) -> tuple[MLPClassifier, RelabeledDataset]:
    pl.seed_everything(seed, workers=True, verbose=False)
    train_set = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(labels)))
    model = MLPClassifier(x.shape[1], int(labels.max()) + 1)
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    _trainer(epochs, callbacks, logger).fit(model, loader)
    return model, train_set


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(pred == y))


def run_demo(
    out_dir: str | os.PathLike[str] = "fld_runs/demo",
    *,
    noise_rate: float = 0.2,
    epochs: int = 40,
    check_every_n_epochs: int = 2,
    seed: int = 0,
) -> DemoResult:
    """Run the digits demo and return what it measured (see the module docstring)."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = load_digits_split(seed)
    num_classes = int(y_tr.max()) + 1
    noisy, mask = inject_noise(y_tr, num_classes, rate=noise_rate, kind="symmetric", seed=seed)

    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            plain, _ = _fit(x_tr, noisy, epochs=epochs, seed=seed, callbacks=[])
            clean, _ = _fit(x_tr, y_tr, epochs=epochs, seed=seed, callbacks=[])
            fld = FakeLabelDiscovery(num_classes, check_every_n_epochs=check_every_n_epochs,
                                     action="relabel", noise_mask=mask,
                                     tensorboard=TensorBoardOptions(image_shape=(8, 8)))
            logger = TensorBoardLogger(save_dir=str(out), name="tensorboard", default_hp_metric=False)
            model, train_set = _fit(x_tr, noisy, epochs=epochs, seed=seed, callbacks=[fld], logger=logger)
    finally:
        quiet.setLevel(level)

    report = fld.report()
    csv_path = out / "label_report.csv"
    report.to_csv(csv_path)
    train_set.write_audit_csv(out / "audit_log.csv")
    queue_csv, _ = report.review_queue(out / "review")
    relabeled = train_set.relabeled_indices
    return DemoResult(
        detection=report.detection(mask),
        relabeled=int(relabeled.size),
        relabel_accuracy=report.correction_accuracy(y_tr),
        downweighted=int(np.count_nonzero(train_set.weights < 1)),
        test_accuracy_plain=accuracy(plain, x_te, y_te),
        test_accuracy_fld=accuracy(model, x_te, y_te),
        test_accuracy_clean=accuracy(clean, x_te, y_te),
        report=report,
        report_csv=csv_path,
        review_queue=queue_csv,
        tensorboard_dir=Path(logger.log_dir),
        seconds=time.perf_counter() - start,
    )


def format_result(result: DemoResult, noise_rate: float) -> str:
    """The demo's printout."""
    d = result.detection
    return "\n".join([
        (f"fld-train demo: digits, {noise_rate:.0%} symmetric label noise ({d.noisy} of "
         f"{len(result.report)} training labels flipped)"),
        "",
        (f"detection    precision {d.precision:.3f}  recall {d.recall:.3f}  F1 {d.f1:.3f}  "
         f"AUROC {d.auroc:.3f}  ({d.flagged} flagged)"),
        (f"relabels     {result.relabeled} samples relabeled, {result.relabel_accuracy:.1%} "
         f"restored the true label; {result.downweighted} down-weighted"),
        (f"test acc.    plain training {result.test_accuracy_plain:.3f} | with fld-train "
         f"{result.test_accuracy_fld:.3f} | clean labels {result.test_accuracy_clean:.3f}"),
        "",
        f"report CSV   {result.report_csv}  (summary: fld-train report {result.report_csv})",
        f"review queue {result.review_queue}",
        f"TensorBoard  {result.tensorboard_dir}",
        f"             open with: tensorboard --logdir {result.tensorboard_dir.parent}",
        f"({result.seconds:.1f} s)",
    ])
