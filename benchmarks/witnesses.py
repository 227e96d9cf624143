"""How far each witness of the posterior can be trusted, on saved detection runs.

For each ``--save-dir`` of ``benchmarks/detection.py``, per noise setting (mean over the saved seeds):
how often the model's mean prediction (the training-dynamics witness) and the 10-nearest-neighbour
vote (the neighbourhood witness) name the given label, separately on the correctly and the wrongly
labelled samples. A witness that names the given label of a *wrong* sample has memorised it (the
model) or sits among neighbours that share it (the kNN); on a correct sample, naming the given label
is simply being right. The last column is the agreement-with-given-labels ratio (model over kNN,
both less chance), the statistic a data-driven weight would use when no noise mask is known.

With ``--suggestions`` (runs saved from session 9 on, which keep the true labels): of the wrong
labels the default check flags, the share whose true class each witness suggests (its most probable
class other than the given one): the combined posterior (what fld-train suggests), the model's mean
prediction alone and the vote of the check's ``k`` neighbours alone.

    python benchmarks/witnesses.py /tmp/digits_saved /tmp/mnist1d_saved /tmp/cifar_saved
    python benchmarks/witnesses.py --suggestions /tmp/mnist1d_saved
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import best_other  # a sibling script
from rescore import load_store, saved_runs  # a sibling script

from fld_train import knn
from fld_train.check import run_check

COLUMNS = ("model names given: clean", "model names given: wrong", "kNN names given: clean",
           "kNN names given: wrong", "agreement ratio")
#: Columns of ``--suggestions``.
SUGGESTION_COLUMNS = ("flagged wrong labels", "posterior suggests the true class", "model alone",
                      "kNN alone")


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


def suggestion_row(path: Path) -> tuple[float, ...]:
    """The four columns of :data:`SUGGESTION_COLUMNS` for one saved run: the share of samples that
    are flagged wrong labels, then the share of those whose true class each witness suggests."""
    saved = np.load(path)
    if "true_labels" not in saved.files:
        raise SystemExit(f"{path}: no true labels saved (runs saved before session 9); rerun detection.py")
    labels, true = saved["labels"], saved["true_labels"]
    store = load_store(saved)
    c = store.num_classes
    ev = run_check(store)
    found = ev.flagged & (labels != true)
    # the check's own neighbours: the same deterministic search that chose its k (an IVF index and a
    # sample above 10,000 rows, so a fresh search at that k would not return them)
    votes = knn.neighbour_label_distribution(knn.auto_neighbours(store.embeddings, labels, c), labels, c)

    def right(suggested: np.ndarray) -> float:
        return float(np.mean(suggested[found] == true[found])) if found.any() else float("nan")

    return (float(found.mean()), right(ev.suggested_labels), right(best_other(store.model_probs().to_dense(c), labels)),
            right(best_other(votes, labels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("save_dirs", type=Path, nargs="+", help="--save-dir folders of benchmarks/detection.py")
    parser.add_argument("--suggestions", action="store_true",
                        help="which witness suggests the true class of the flagged wrong labels")
    args = parser.parse_args()
    columns, row_of = (SUGGESTION_COLUMNS, suggestion_row) if args.suggestions else (COLUMNS, witness_row)
    print("| run | setting | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for folder in args.save_dirs:
        for setting, paths in saved_runs(folder).items():
            rows = [row_of(p) for p in paths]
            cells = [statistics.mean(r[i] for r in rows) for i in range(len(columns))]
            print(f"| {folder.name} | {setting} ({len(paths)} seeds) | "
                  + " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
