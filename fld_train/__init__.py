"""fld-train: find and fix mislabeled training samples while a PyTorch Lightning model trains."""

from fld_train.dataset import Change, RelabeledDataset
from fld_train.report import LabelReport
from fld_train.review import Review, ReviewFileError
from fld_train.tensorboard import TensorBoardOptions

__all__ = ["Change", "FakeLabelDiscovery", "LabelReport", "RelabeledDataset", "Review", "ReviewFileError",
           "TensorBoardOptions"]
__version__ = "0.1.0"


def __getattr__(name: str):  # Lightning is imported only when the callback is used
    if name == "FakeLabelDiscovery":
        from fld_train.callback import FakeLabelDiscovery

        return FakeLabelDiscovery
    raise AttributeError(f"module 'fld_train' has no attribute {name!r}")
