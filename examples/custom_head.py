"""A LightningModule of your own, whose classifier is not the last ``nn.Linear`` with 10 outputs.

Here an auxiliary 10-way head (a "teacher" projection) comes after the real classifier in the
module tree, so the automatic search would pick the wrong layer: ``head="classifier.out"`` names the
right one. The model also returns a dict from ``forward``, which the callback does not need: it
reads the head's input and output through a hook.

    python examples/custom_head.py --epochs 30
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset
from fld_train.demo import load_digits_split
from fld_train.noise import inject_noise


class TwoHeadNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.classifier = nn.ModuleDict({"out": nn.Linear(64, 10)})
        self.aux = nn.Linear(64, 10)  # also 10 outputs, and later in the module tree

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        return {"logits": self.classifier["out"](z), "aux": self.aux(z.detach())}

    def training_step(self, batch, batch_idx):
        x, y, _idx = batch  # the index is for the callback
        out = self(x)
        loss = F.cross_entropy(out["logits"], y) + 0.1 * F.mse_loss(out["aux"], out["logits"].detach())
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="fld_runs/custom_head")
    args = parser.parse_args(argv)

    x, y_true, _, _ = load_digits_split(seed=0)
    y_noisy, noise_mask = inject_noise(y_true, 10, rate=0.2, seed=0)
    train_set = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(y_noisy)))
    fld = FakeLabelDiscovery(num_classes=10, action="flag", head="classifier.out")
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[fld], default_root_dir=args.out,
                        enable_progress_bar=False, log_every_n_steps=10)
    trainer.fit(TwoHeadNet(), DataLoader(train_set, batch_size=64, shuffle=True))
    m = fld.report().detection(noise_mask)
    print(f"head 'classifier.out': precision {m.precision:.3f} recall {m.recall:.3f} F1 {m.f1:.3f} "
          f"AUROC {m.auroc:.3f}")
    return {"f1": m.f1, "auroc": m.auroc}


if __name__ == "__main__":
    main()
