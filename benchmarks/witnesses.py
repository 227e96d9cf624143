"""How far each witness of the posterior can be trusted, on saved detection runs.

For each ``--save-dir`` of ``benchmarks/detection.py``, per noise setting (mean over the saved seeds):
how often the model's mean prediction (the training-dynamics witness) and the 10-nearest-neighbour
vote (the neighbourhood witness) name the given label, separately on the correctly and the wrongly
labelled samples. A witness that names the given label of a *wrong* sample has memorised it (the
model) or sits among neighbours that share it (the kNN); on a correct sample, naming the given label
is simply being right. The last column is the agreement-with-given-labels ratio (model over kNN,
both less chance), the statistic a data-driven weight would use when no noise mask is known.

    python benchmarks/witnesses.py /tmp/digits_saved /tmp/mnist1d_saved /tmp/cifar_saved
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rescore import load_store, saved_runs  # a sibling script

from fld_train import knn

COLUMNS = ("model names given: clean", "model names given: wrong", "kNN names given: clean",
           "kNN names given: wrong", "agreement ratio")


def witness_row(path: Path) -> tuple[float, ...]:
    """The five columns of :data:`COLUMNS` for one saved run (NaN on wrong labels without noise)."""
    saved = np.load(path)
    labels, mask = saved["labels"], saved["mask"]
    store = load_store(saved)
    c = store.num_classes
    model = store.model_probs().to_dense(c).argmax(axis=1) == labels
    votes = knn.neighbour_label_distribution(knn.search(store.embeddings, k=10), labels, c)
    neighbours = votes.argmax(axis=1) == labels
    ratio = (model.mean() - 1 / c) / (neighbours.mean() - 1 / c)

    def share(hit: np.ndarray, rows: np.ndarray) -> float:
        return float(hit[rows].mean()) if rows.any() else float("nan")

    return share(model, ~mask), share(model, mask), share(neighbours, ~mask), share(neighbours, mask), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("save_dirs", type=Path, nargs="+", help="--save-dir folders of benchmarks/detection.py")
    args = parser.parse_args()
    print("| run | setting | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for folder in args.save_dirs:
        for setting, paths in saved_runs(folder).items():
            rows = [witness_row(p) for p in paths]
            cells = [statistics.mean(r[i] for r in rows) for i in range(len(COLUMNS))]
            print(f"| {folder.name} | {setting} ({len(paths)} seeds) | "
                  + " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
