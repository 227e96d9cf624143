"""Detection benchmark: fld-train against cleanlab's 5-fold cross-validation and classic baselines.

Every method sees the same data, the same noisy labels and the same model (``--model``: an MLP on
digits, a 1-D CNN on MNIST-1D by default), in one run:

- ``fld-train``: ``FakeLabelDiscovery(action="flag")``, one training run.
- ``fld-train relabel``: ``action="relabel"``, one training run; its report still judges the given label.
- ``fld-train K-fold``: :func:`fld_train.folds.kfold_discovery` with 5 folds: out-of-fold
  probabilities, the training dynamics of the 4 fits that trained on each sample, out-of-fold kNN votes.
- ``cleanlab 5-fold``: ``cleanlab.filter.find_label_issues`` on out-of-sample probabilities from 5
  trainings on 4/5 of the data each; scores ``1 - get_label_quality_scores``.
- ``AUM``: area under the margin from the fld-train run's store; flagged when AUM < 0.
- ``kNN``: 10-nearest-neighbour vote on the final embeddings (given labels); flagged when the
  majority is another label.
- ``conf<0.7``: the final model's probability of the given label below 0.7.
- ``k-means vote``: k-means (10 clusters per class) on the final embeddings; flagged when the
  cluster's majority label is another one.

Columns: precision, recall, F1 of the flags and AUROC of the scores against the true noise mask;
correction accuracy (share of relabels that restored the true label); clean test accuracy of the
model that method trains (plain noisy training for the baselines); wall time relative to plain
training. Mean over ``--seeds``.

    python benchmarks/detection.py --dataset digits --noise symmetric:0.2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset, knn
from fld_train.demo import Conv1dClassifier, MLPClassifier, load_digits_split
from fld_train.folds import kfold_discovery
from fld_train.metrics import auroc, correction_accuracy, precision_recall_f1
from fld_train.noise import inject_noise
from fld_train.store import softmax


@dataclass(frozen=True)
class Data:
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    epochs: int
    hidden: int
    model: str = "mlp"


def load_digits_data() -> Data:
    x, y, xt, yt = load_digits_split(seed=0)
    return Data(x, y, xt, yt, epochs=40, hidden=128)


def load_mnist1d() -> Data:
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())  # generated offline, seed fixed by the package
    scale = np.abs(d["x"]).max()
    return Data((d["x"] / scale).astype(np.float32), d["y"].astype(np.int64),
                (d["x_test"] / scale).astype(np.float32), d["y_test"].astype(np.int64), epochs=40, hidden=256,
                model="cnn1d")


DATASETS: dict[str, Callable[[], Data]] = {"digits": load_digits_data, "mnist1d": load_mnist1d}
#: The MLP's epochs on MNIST-1D (``--model mlp``): it learns more slowly than the 1-D CNN.
MLP_EPOCHS = {"mnist1d": 60}


def make_model(data: Data) -> pl.LightningModule:
    """A fresh model of ``data.model``: ``"mlp"`` (two hidden layers of ``data.hidden``) or ``"cnn1d"``."""
    if data.model == "cnn1d":
        return Conv1dClassifier(data.x.shape[1], 10)
    return MLPClassifier(data.x.shape[1], 10, hidden=data.hidden)


def fit(data: Data, x: np.ndarray, labels: np.ndarray, seed: int, callbacks=()) -> tuple[pl.LightningModule, float, RelabeledDataset]:
    pl.seed_everything(seed, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(labels)))
    model = make_model(data)
    trainer = pl.Trainer(max_epochs=data.epochs, accelerator="cpu", logger=False, callbacks=list(callbacks),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(ds, batch_size=64, shuffle=True))
    return model, time.perf_counter() - start, ds


@torch.no_grad()
def predict(model: pl.LightningModule, x: np.ndarray) -> np.ndarray:
    model.eval()
    return softmax(model(torch.from_numpy(x)).numpy())


def noisy_labels(data: Data, spec: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    kind, rate = spec.split(":")
    probs = None
    if kind == "instance":  # what a model finds confusable, out of sample
        probs = cross_val_predict(LogisticRegression(max_iter=2000), data.x, data.y, cv=5, method="predict_proba")
    if float(rate) == 0:
        return data.y.copy(), np.zeros(data.y.size, dtype=bool)
    return inject_noise(data.y, 10, rate=float(rate), kind=kind if kind != "none" else "symmetric",
                        seed=seed, features=data.x, probs=probs)


def run_setting(data: Data, spec: str, seed: int, clean_acc: float, *, kfold: bool = True) -> dict[str, dict[str, float]]:
    labels, mask = noisy_labels(data, spec, seed)
    rows: dict[str, dict[str, float]] = {}

    def row(name, flagged, scores, time_ratio, test_acc, corr=float("nan")):
        p, r, f1 = precision_recall_f1(flagged, mask) if mask.any() else (float("nan"),) * 3
        rows[name] = {"precision": p, "recall": r, "f1": f1, "auroc": auroc(scores, mask),
                      "flagged_share": float(np.mean(flagged)), "correction": corr,
                      "test_acc": test_acc, "time": time_ratio, "clean_acc": clean_acc}

    plain, t_plain, _ = fit(data, data.x, labels, seed)
    plain_acc = float(np.mean(predict(plain, data.x_test).argmax(1) == data.y_test))

    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="flag", tensorboard=False)
    model, t_fld, _ = fit(data, data.x, labels, seed, [fld])
    rep = fld.report()
    row("fld-train", rep.flagged, rep.scores, t_fld / t_plain, plain_acc)

    fld_r = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel", tensorboard=False)
    model_r, t_r, ds_r = fit(data, data.x, labels, seed, [fld_r])
    rep_r = fld_r.report()
    changed = ds_r.current_labels != labels
    row("fld-train relabel", rep_r.flagged, rep_r.scores, t_r / t_plain,
        float(np.mean(predict(model_r, data.x_test).argmax(1) == data.y_test)),
        correction_accuracy(changed, ds_r.current_labels, data.y))

    # cleanlab: out-of-sample probabilities from 5 trainings
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    oos = np.zeros((labels.size, 10))
    t_cv = 0.0
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(folds.split(data.x, labels)):
        m, t, _ = fit(data, data.x[tr], labels[tr], seed + k)
        t_cv += t
        oos[te] = predict(m, data.x[te])
    issues = find_label_issues(labels, oos)
    row("cleanlab 5-fold", issues, 1 - get_label_quality_scores(labels, oos), t_cv / t_plain, plain_acc)

    if kfold:  # the same 5 trainings' worth, with training dynamics and out-of-fold kNN votes
        def trainer(callbacks):
            return pl.Trainer(max_epochs=data.epochs, accelerator="cpu", logger=False, callbacks=callbacks,
                              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)

        pl.seed_everything(seed, verbose=False)
        start = time.perf_counter()
        kf = kfold_discovery(lambda: make_model(data),
                             TensorDataset(torch.from_numpy(data.x), torch.from_numpy(labels)), 10,
                             folds=5, make_trainer=trainer, batch_size=64, seed=seed)
        row("fld-train K-fold", kf.report.flagged, kf.report.scores, (time.perf_counter() - start) / t_plain,
            plain_acc)

    # baselines from the flag run's store and final state
    store = fld.store
    aum = store.mean_margin()
    row("AUM", aum < 0, 1 / (1 + np.exp(np.clip(aum, -50, 50))), t_fld / t_plain, plain_acc)
    emb = store.embeddings.astype(np.float32)
    agreement, dist = knn.label_agreement(emb, labels, 10, k=10)
    row("kNN", dist.argmax(1) != labels, 1 - agreement, t_fld / t_plain, plain_acc)
    p_given = predict(model, data.x)[np.arange(labels.size), labels]
    row("conf<0.7", p_given < 0.7, 1 - p_given, t_fld / t_plain, plain_acc)
    row("k-means vote", *kmeans_vote(emb, labels, seed), t_fld / t_plain, plain_acc)
    return rows


def kmeans_vote(emb: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    x = np.ascontiguousarray(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
    km = faiss.Kmeans(x.shape[1], 100, niter=25, seed=seed, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    assign = assign[:, 0]
    counts = np.zeros((100, 10))
    np.add.at(counts, (assign, labels), 1)
    share = counts[assign, labels] / counts[assign].sum(1)
    return counts[assign].argmax(1) != labels, 1 - share


def flag_run(data: Data, spec: str, seed: int):
    """One ``action="flag"`` training on noisy labels: ``(store, labels, noise_mask)`` (the other
    benchmarks re-score this store)."""
    labels, mask = noisy_labels(data, spec, seed)
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="flag", tensorboard=False)
    fit(data, data.x, labels, seed, [fld])
    return fld.store, labels, mask


def bench_parser(doc: str, noise: list[str], *, seeds: bool = True) -> argparse.ArgumentParser:
    """The options every detection-style benchmark shares: dataset, noise settings, threads and
    (``seeds``) the seeds to average over."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--noise", nargs="+", default=noise,
                        help="kind:rate, kind in symmetric, pairflip, instance, clustered, none")
    parser.add_argument("--model", choices=["auto", "mlp", "cnn1d"], default="auto",
                        help="auto: an MLP on digits, a 1-D CNN on MNIST-1D")
    parser.add_argument("--threads", type=int, default=2)
    if seeds:
        parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return parser


def start(args: argparse.Namespace) -> Data:
    """Fix torch's thread count, silence warnings and Lightning's info lines, load ``--dataset`` with
    ``--model``."""
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = DATASETS[args.dataset]()
    model = getattr(args, "model", "auto")
    if model in ("auto", data.model):
        return data
    return replace(data, model=model, epochs=MLP_EPOCHS.get(args.dataset, data.epochs) if model == "mlp" else 40)


def mean_rows(per_seed: list[dict[str, tuple[float, ...]]]) -> dict[str, tuple[float, ...]]:
    """Average each row's numbers over the seeds (rows keyed alike in every seed)."""
    return {key: tuple(statistics.mean(v) for v in zip(*(s[key] for s in per_seed))) for key in per_seed[0]}


COLUMNS = ("precision", "recall", "f1", "auroc", "flagged_share", "correction", "test_acc", "time")


def main() -> None:
    parser = bench_parser(__doc__, ["symmetric:0.2"])
    parser.add_argument("--json", default=None, help="also write every seed's numbers to this file")
    parser.add_argument("--kfold", action=argparse.BooleanOptionalAction, default=True,
                        help="include fld-train's K-fold mode (5 more trainings per setting and seed)")
    args = parser.parse_args()
    data = start(args)

    clean = {}
    for seed in args.seeds:
        m, _, _ = fit(data, data.x, data.y, seed)
        clean[seed] = float(np.mean(predict(m, data.x_test).argmax(1) == data.y_test))
    everything = {}
    for spec in args.noise:
        per_seed = [run_setting(data, spec, seed, clean[seed], kfold=args.kfold) for seed in args.seeds]
        everything[spec] = per_seed
        print(f"\n{args.dataset} ({data.model}, {data.epochs} epochs), {spec}, mean over seeds {args.seeds} "
              f"(clean-label test accuracy {statistics.mean(clean.values()):.3f})")
        print("| method | precision | recall | F1 | AUROC | flagged | relabels right | test acc. | time vs plain |")
        print("|---|---|---|---|---|---|---|---|---|")
        for method in per_seed[0]:
            mean = {c: float(np.nanmean([r[method][c] for r in per_seed])) if not all(
                np.isnan(r[method][c]) for r in per_seed) else float("nan") for c in COLUMNS}
            print(f"| {method} | " + " | ".join(
                "-" if np.isnan(mean[c]) else (f"{mean[c]:.1%}" if c in ("flagged_share", "correction")
                                                 else f"{mean[c]:.2f}x" if c == "time" else f"{mean[c]:.3f}")
                for c in COLUMNS) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"dataset": args.dataset, "clean_acc": clean, "results": everything}, fh, indent=1)


if __name__ == "__main__":
    main()
