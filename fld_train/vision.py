"""Image models and loading shared by the CIFAR-10 example, the benchmarks and the command line."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from fld_train._validation import check_bool, check_int, check_positive

#: Per-channel mean and standard deviation of CIFAR-10 training images (0-1 scale).
CIFAR_MEAN, CIFAR_STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class SmallCNN(pl.LightningModule):
    """Three conv blocks and a linear head: ~0.1M parameters, ~20 MFLOP per 32x32 image.

    Its ``training_step`` reads ``(x, y, idx)`` batches, as :class:`~fld_train.RelabeledDataset`
    yields; the head (``fc``) is the last ``nn.Linear`` with ``num_classes`` outputs.

    Args:
        num_classes: outputs of the head.
        lr: Adam's learning rate (with ``one_cycle``, the peak of the schedule).
        augment: train on randomly flipped (left-right) and shifted images (each image padded by 4
            pixels, reflected, and cropped back at a random offset), drawn anew for every batch.
            Validation and prediction see the images as they are.
        one_cycle: anneal the learning rate with ``torch.optim.lr_scheduler.OneCycleLR`` over the
            whole training (``Trainer.estimated_stepping_batches``), stepped every batch.

    On a random 20,000 CIFAR-10 training images, the plain recipe (Adam at 0.002, 4 epochs) reached
    0.525 clean test accuracy and ``augment=True, one_cycle=True, lr=0.01`` for 12 epochs 0.711
    (means of 3 seeds, docs/benchmarks.md).

    Raises:
        TypeError, ValueError: an argument of the wrong type or out of range (``num_classes >= 2``,
            ``lr > 0``, ``augment`` and ``one_cycle`` True or False); the message names it.
    """

    def __init__(self, num_classes: int = 10, lr: float = 2e-3, *, augment: bool = False,
                 one_cycle: bool = False) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes, minimum=2)
        self.lr = check_positive("lr", lr, hint="It is Adam's learning rate (the peak with one_cycle).")
        self.augment = check_bool("augment", augment)
        self.one_cycle = check_bool("one_cycle", one_cycle)
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = F.cross_entropy(self(flip_and_shift(x) if self.augment else x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Logs ``val_loss`` and ``val_acc`` on ``(x, y)`` or ``(x, y, idx)`` batches."""
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        if not self.one_cycle:
            return optimizer
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def flip_and_shift(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Each image of ``(N, C, H, W)`` flipped left-right with probability 1/2 and shifted by up to
    ``pad`` pixels each way (reflect-padded, then cropped at a random offset); same shape out.

    Raises:
        ValueError: ``images`` is not 4-D, or ``pad`` is not in ``[0, min(H, W))`` (reflection needs
            the padding to be smaller than the image).
    """
    if images.ndim != 4:
        raise ValueError(f"`images` must be a batch of shape (N, C, H, W), got shape {tuple(images.shape)}.")
    n, _, h, w = images.shape
    if not 0 <= pad < min(h, w):
        raise ValueError(f"`pad` must be in [0, {min(h, w)}) for {h}x{w} images, got {pad}.")
    flip = torch.rand(n, device=images.device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    top = torch.randint(0, 2 * pad + 1, (n,), device=images.device)
    left = torch.randint(0, 2 * pad + 1, (n,), device=images.device)
    rows = (top[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (left[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def load_image_folder(
    root: str | Path, *, subset: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Decode an ImageFolder tree (``root/<class>/<image>``) into memory, normalised.

    Args:
        root: folder with one sub-folder per class (sorted names give class ids, as ImageFolder).
        subset: keep this many images, drawn at random (``None``: all).
        seed: seeds the subset.

    Returns:
        ``(images, labels, classes)``: ``(N, 3, H, W)`` float32 images normalised with the CIFAR-10
        statistics, ``(N,)`` int64 labels and the class names.

    Raises:
        ValueError: ``root`` has no class folders or no images.
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise ValueError(f"`root` {str(root)!r} must be a folder with one sub-folder of images per class.")
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir()) if f.is_file()]
    if not files:
        raise ValueError(f"`root` {str(root)!r} holds no images in its class folders.")
    if subset is not None and subset < len(files):
        keep = np.sort(np.random.default_rng(seed).choice(len(files), size=subset, replace=False))
        files = [files[i] for i in keep]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f, _ in files])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (images - mean) / std, np.array([c for _, c in files], dtype=np.int64), classes


class ImageClassifier(pl.LightningModule):
    """Any image network whose last ``nn.Linear`` is the classifier, trained with cross-entropy on
    ``(x, y, idx)`` batches (SGD with momentum and a cosine schedule over ``max_epochs``).

    Raises:
        TypeError, ValueError: ``network`` is not an ``nn.Module`` or ``lr`` is not a float > 0.
    """

    def __init__(self, network: nn.Module, lr: float = 0.05) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"`network` must be a torch.nn.Module, got {type(network).__name__}.")
        self.network = network
        self.lr = check_positive("lr", lr, hint="It is SGD's initial learning rate.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)
        epochs = max(int(self.trainer.max_epochs or 1), 1) if self._trainer is not None else 1
        return {"optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)}


#: Model names that :func:`build_model` knows, with the input size each expects by default.
MODELS = {"small-cnn": 32, "small-cnn-aug": 32, "resnet18": 224}


def build_model(name: str, num_classes: int) -> pl.LightningModule:
    """A fresh model by name (:data:`MODELS`): ``small-cnn`` is :class:`SmallCNN`, ``small-cnn-aug``
    the same network with ``augment=True, one_cycle=True`` and a peak learning rate of 0.01 (the
    CIFAR-10 recipe of docs/benchmarks.md), ``resnet18`` is torchvision's, untrained.

    Raises:
        ValueError: unknown ``name``.
    """
    if name == "small-cnn":
        return SmallCNN(num_classes)
    if name == "small-cnn-aug":
        return SmallCNN(num_classes, lr=0.01, augment=True, one_cycle=True)
    if name == "resnet18":
        from torchvision.models import resnet18

        return ImageClassifier(resnet18(num_classes=num_classes))
    raise ValueError(f"`model` must be one of {sorted(MODELS)}, got {name!r}.")


def image_folder_dataset(root: str | Path, image_size: int) -> torch.utils.data.Dataset:
    """torchvision's ``ImageFolder`` over ``root``, images resized to ``image_size`` and normalised
    (read lazily, for folders of any size).

    Raises:
        ValueError: ``root`` has no class folders with images (the message names it).
    """
    from torchvision import datasets, transforms

    root = Path(root)
    if not root.is_dir() or not any(p.is_dir() for p in root.iterdir()):
        raise ValueError(f"`data_dir` {str(root)!r} must be a folder with one sub-folder of images per class.")
    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor(),
                             transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    try:
        return datasets.ImageFolder(str(root), transform=tf)
    except FileNotFoundError as err:
        raise ValueError(f"`data_dir` {str(root)!r}: {err}") from None
