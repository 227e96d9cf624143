"""Detection benchmark: fld-train against cleanlab's 5-fold cross-validation and classic baselines.

Every method sees the same data, the same noisy labels and the same model (``--model``: an MLP on
digits, a 1-D CNN on MNIST-1D, a small CNN on CIFAR-10 by default), in one run:

- ``fld-train``: ``FakeLabelDiscovery(action="flag")``, one training run.
- ``fld-train, monitor=METRIC`` (``--monitor``): the flag run with ``monitor=METRIC``, so its report
  is the check with the best validation score, on a validation set with noisy labels (half the test set).
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
correction accuracy (share of flagged samples whose suggested label is the true one: the method's most
probable class other than the given label, so it is at most the precision); relabels right (the
relabel run's changed labels that are the true one); clean test accuracy of the model that method
trains (plain noisy training for the baselines); wall time relative to plain training. Mean over
``--seeds``. The clean test accuracy each table quotes comes from a training on the true labels per
seed; a noise-free setting (``none:0``) without ``--monitor`` is that training, so such settings run
first and no seed is trained twice on the same labels.

    python benchmarks/detection.py --dataset digits --noise symmetric:0.2 --seeds 0 1 2
    python benchmarks/detection.py --dataset cifar10 --data-dir ../shared/data/cifar10 \
        --noise symmetric:0.4 --seeds 0 --methods flag relabel cleanlab baselines --json cifar_seed0.json
    python benchmarks/detection.py --merge cifar_seed0.json cifar_seed1.json cifar_seed2.json

``--save-dir DIR`` keeps each setting's labels, flag-run store, cleanlab probabilities and K-fold
mode's parts, which ``benchmarks/rescore.py DIR`` re-scores with other scoring options without training
again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset, knn
from fld_train.demo import Conv1dClassifier, MLPClassifier, load_digits_split
from fld_train.folds import kfold_discovery
from fld_train.metrics import auroc, correction_accuracy, precision_recall_f1
from fld_train.noise import inject_noise
from fld_train.sparse import SparseProbs
from fld_train.store import softmax
from fld_train.vision import SmallCNN, load_image_folder


@dataclass(frozen=True)
class Data:
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    epochs: int
    hidden: int
    model: str = "mlp"
    batch_size: int = 64
    lr: float | None = None  # Adam's learning rate; None: the model's own default
    x_val: np.ndarray | None = None  # a held-out validation set (``--monitor``), true labels in y_val
    y_val: np.ndarray | None = None


def with_validation(data: Data) -> Data:
    """Half of the test set (a fixed random half) becomes a validation set, the other half the test
    set. Each noise setting gives the validation set noisy labels of its own (:func:`noisy_labels`),
    as a user's held-out data would have."""
    order = np.random.default_rng(0).permutation(len(data.y_test))
    val, test = order[: order.size // 2], order[order.size // 2:]
    return replace(data, x_val=data.x_test[val], y_val=data.y_test[val], x_test=data.x_test[test],
                   y_test=data.y_test[test])


def monitor_mode(metric: str) -> str:
    """``"max"`` for an accuracy (a name ending in ``acc``), ``"min"`` otherwise (a loss)."""
    return "max" if metric.endswith("acc") else "min"


def load_digits_data() -> Data:
    x, y, xt, yt = load_digits_split(seed=0)
    return Data(x, y, xt, yt, epochs=40, hidden=128)


def load_mnist1d() -> Data:
    """MNIST-1D's default 4,000 / 1,000 split; a 1-D CNN, 40 epochs of Adam at its default 0.002 in
    batches of 64 (86% clean test accuracy). ``--epochs 60 --lr 0.01 --batch-size 100`` (the MNIST-1D
    reference code's learning rate and batch size) reach 93.9% on clean labels (3 seeds) and memorise noisy ones."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())  # generated offline, seed fixed by the package
    scale = np.abs(d["x"]).max()
    return Data((d["x"] / scale).astype(np.float32), d["y"].astype(np.int64),
                (d["x_test"] / scale).astype(np.float32), d["y_test"].astype(np.int64), epochs=40, hidden=256,
                model="cnn1d")


def load_cifar10(data_dir: str | None, subset: int, seed: int = 0) -> Data:
    """CIFAR-10 from an ImageFolder tree (``data_dir/train``, ``data_dir/test``): ``subset`` training
    images drawn with ``seed``, every test image; a small CNN, 4 epochs, batches of 128."""
    if not data_dir:
        raise SystemExit("--dataset cifar10 needs --data-dir, a folder with train/ and test/ ImageFolder trees "
                         "(e.g. ../shared/data/cifar10)")
    x, y, _ = load_image_folder(Path(data_dir) / "train", subset=subset, seed=seed)
    xt, yt, _ = load_image_folder(Path(data_dir) / "test")
    return Data(x.numpy(), y, xt.numpy(), yt, epochs=4, hidden=0, model="small-cnn", batch_size=128)


DATASETS: dict[str, Callable[[argparse.Namespace], Data]] = {
    "digits": lambda args: load_digits_data(),
    "mnist1d": lambda args: load_mnist1d(),
    "cifar10": lambda args: load_cifar10(args.data_dir, args.subset),
}
#: The MLP's epochs on MNIST-1D (``--model mlp``): it learns more slowly than the 1-D CNN.
MLP_EPOCHS = {"mnist1d": 60}
#: ``--model small-cnn-aug``: the small CNN on flipped and shifted images with a one-cycle schedule
#: peaking at Adam 0.01, 12 epochs (about 0.70 clean test accuracy on CIFAR-10's 20,000 images).
AUGMENTED_CNN = {"epochs": 12, "lr": 0.01}


def make_model(data: Data) -> pl.LightningModule:
    """A fresh model of ``data.model``: ``"mlp"`` (two hidden layers of ``data.hidden``), ``"cnn1d"``,
    ``"small-cnn"`` (:class:`fld_train.vision.SmallCNN`, for images) or ``"small-cnn-aug"`` (the same
    network with ``augment=True, one_cycle=True``)."""
    lr = {} if data.lr is None else {"lr": data.lr}
    if data.model == "cnn1d":
        return Conv1dClassifier(data.x.shape[1], 10, **lr)
    if data.model == "small-cnn":
        return SmallCNN(10, **lr)
    if data.model == "small-cnn-aug":
        return SmallCNN(10, **lr, augment=True, one_cycle=True)
    return MLPClassifier(data.x.shape[1], 10, hidden=data.hidden, **lr)


def fit(data: Data, x: np.ndarray, labels: np.ndarray, seed: int, callbacks=(),
        val_labels: np.ndarray | None = None) -> tuple[pl.LightningModule, float, RelabeledDataset]:
    """Train a fresh model on ``(x, labels)``; with ``val_labels`` it validates on ``data.x_val`` with
    those labels after every epoch (the models log ``val_loss`` and ``val_acc``)."""
    pl.seed_everything(seed, verbose=False)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(labels)))
    model = make_model(data)
    val = None
    if val_labels is not None:
        val = DataLoader(TensorDataset(torch.from_numpy(data.x_val), torch.from_numpy(val_labels)), batch_size=1000)
    start = time.perf_counter()
    make_trainer(data.epochs, list(callbacks)).fit(model, DataLoader(ds, batch_size=data.batch_size, shuffle=True), val)
    return model, time.perf_counter() - start, ds


def make_trainer(epochs: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Trainer every benchmark training uses: ``epochs`` on the CPU, nothing written, no
    sanity validation."""
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=callbacks,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0)


@torch.no_grad()
def predict(model: pl.LightningModule, x: np.ndarray, chunk: int = 1000) -> np.ndarray:
    model.eval()
    return softmax(np.concatenate([model(torch.from_numpy(x[i:i + chunk])).numpy()
                                   for i in range(0, len(x), chunk)]))


def is_noise_free(spec: str) -> bool:
    """Whether a ``--noise`` setting (``"kind:rate"``) flips no label."""
    return float(spec.split(":")[1]) == 0


def noisy_labels(data: Data, spec: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if is_noise_free(spec):
        return data.y.copy(), np.zeros(data.y.size, dtype=bool)
    kind, rate = spec.split(":")
    probs = None
    features = data.x.reshape(len(data.x), -1)
    if kind == "instance":  # what a model finds confusable, out of sample (images: on 64 principal components)
        classifier = LogisticRegression(max_iter=2000)
        if features.shape[1] > 256:
            classifier = make_pipeline(PCA(64, random_state=0), classifier)
        probs = cross_val_predict(classifier, features, data.y, cv=5, method="predict_proba")
    return inject_noise(data.y, 10, rate=float(rate), kind=kind if kind != "none" else "symmetric",
                        seed=seed, features=features, probs=probs)


#: Method groups of ``--methods``; "baselines" (AUM, kNN, conf<0.7, k-means vote) reuse the flag run;
#: "monitor" (a flag run with ``monitor=``) needs ``--monitor``.
METHODS = ("flag", "monitor", "relabel", "cleanlab", "kfold", "baselines")
#: What a run measures when ``--methods`` is not given and there is no validation set.
DEFAULT_METHODS = tuple(m for m in METHODS if m != "monitor")


def run_setting(data: Data, spec: str, seed: int, clean_acc: float | None, *,
                methods: tuple[str, ...] = DEFAULT_METHODS, save: Path | None = None,
                relabel_options: dict[str, Any] | None = None, flag_options: dict[str, Any] | None = None,
                monitor: str | None = None) -> dict[str, dict[str, float]]:
    """One noise setting and seed: every method of ``methods``; with ``save``, also an ``.npz`` there
    with the noisy labels, the noise mask, the flag run's store, cleanlab's out-of-sample
    probabilities and K-fold mode's parts, so that scoring changes can be re-measured without training again.
    ``relabel_options`` go to the relabel run's :class:`~fld_train.FakeLabelDiscovery`,
    ``flag_options`` to the flag and monitor runs'. With a
    validation set (``data.x_val``), it gets noisy labels of this setting (another noise seed) and
    every training but K-fold mode's validates on it; the ``monitor`` run watches ``monitor``.
    ``clean_acc`` is the seed's clean-label test accuracy; ``None`` for a noise-free setting without a
    validation set, whose plain training is that clean training (its accuracy is used)."""
    if clean_acc is None and (not is_noise_free(spec) or data.x_val is not None):
        raise ValueError(f"`clean_acc` may be None only for a noise-free setting without a validation set, "
                         f"got {spec!r}{' with one' if data.x_val is not None else ''}")
    labels, mask = noisy_labels(data, spec, seed)
    val_labels = None
    if data.x_val is not None:
        val_labels, _ = noisy_labels(replace(data, x=data.x_val, y=data.y_val), spec, seed + 1000)
    rows: dict[str, dict[str, float]] = {}
    saved: dict[str, np.ndarray] = {"labels": labels, "mask": mask, "true_labels": data.y}

    def row(name, flagged, scores, suggested, time_ratio, test_acc, relabels_right=float("nan"), noise_model=None):
        rows[name] = {**flag_metrics(flagged, scores, mask),
                      "correction": correction_accuracy(flagged, suggested, data.y),
                      "relabels_right": relabels_right, "test_acc": test_acc, "time": time_ratio,
                      "clean_acc": clean_acc}
        if noise_model is not None:  # the ranking the report's check used (``ranking="auto"`` chooses)
            rows[name]["noise_model"] = float(noise_model)

    plain, t_plain, _ = fit(data, data.x, labels, seed, val_labels=val_labels)
    plain_acc = float(np.mean(predict(plain, data.x_test).argmax(1) == data.y_test))
    clean_acc = plain_acc if clean_acc is None else clean_acc

    if "flag" in methods or "baselines" in methods:
        fld = discovery(**(flag_options or {}))
        model, t_fld, _ = fit(data, data.x, labels, seed, [fld], val_labels)
        rep = fld.report()
        row("fld-train", rep.flagged, rep.scores, rep.suggested_labels, t_fld / t_plain, plain_acc,
            noise_model=rep.noise_model)
        saved.update({f"store_{key}": np.asarray(value) for key, value in fld.store.state_dict().items()
                      if value is not None})
    if "monitor" in methods:
        if monitor is None or val_labels is None:
            raise ValueError("the 'monitor' method needs `monitor` and a validation set (--monitor)")
        fld_m = discovery(**{"monitor": monitor, "mode": monitor_mode(monitor), **(flag_options or {})})
        _, t_m, _ = fit(data, data.x, labels, seed, [fld_m], val_labels)
        rep = fld_m.report()
        name = f"fld-train, monitor={monitor}"
        row(name, rep.flagged, rep.scores, rep.suggested_labels, t_m / t_plain, plain_acc, noise_model=rep.noise_model)
        rows[name]["check_epoch"] = rep.epoch + 1  # the epoch (1-based) whose check the report holds
    if "relabel" in methods:
        _relabel_row(data, labels, seed, t_plain, row, relabel_options or {}, val_labels)
        rows["fld-train relabel"]["plain_acc"] = plain_acc  # the reference for the share of the gap closed
    if "cleanlab" in methods:
        saved["oos"] = _cleanlab_row(data, labels, seed, t_plain, plain_acc, row, val_labels)
    if "kfold" in methods:
        saved.update(_kfold_row(data, labels, seed, t_plain, plain_acc, row))
    if "baselines" in methods:
        _baseline_rows(data, labels, seed, fld, model, t_fld / t_plain, plain_acc, row)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save / f"{spec.replace(':', '_')}_seed{seed}.npz", **saved)
    return rows


def flag_metrics(flagged: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 (NaN without noise), AUROC and share flagged of one method's flags."""
    p, r, f1 = precision_recall_f1(flagged, mask) if mask.any() else (float("nan"),) * 3
    return {"precision": p, "recall": r, "f1": f1, "auroc": auroc(scores, mask),
            "flagged_share": float(np.mean(flagged))}


def best_other(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N,)`` each row's most probable class other than its given label: a flag says the label is
    wrong, so this is what a method that gives ``(N, C)`` class scores would suggest instead."""
    other = np.array(probs, dtype=np.float64)
    other[np.arange(labels.size), labels] = -np.inf
    return other.argmax(axis=1)


def cleanlab_verdict(labels: np.ndarray, oos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's ``find_label_issues`` flags and ``1 - get_label_quality_scores`` scores on ``(N, C)``
    out-of-sample probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return find_label_issues(labels, oos), 1 - get_label_quality_scores(labels, oos)


def _relabel_row(data: Data, labels: np.ndarray, seed: int, t_plain: float, row: Callable,
                 options: dict[str, Any], val_labels: np.ndarray | None = None) -> None:
    fld_r = discovery(**{"action": "relabel", **options})
    model_r, t_r, ds_r = fit(data, data.x, labels, seed, [fld_r], val_labels)
    rep_r = fld_r.report()
    changed = ds_r.current_labels != labels
    row("fld-train relabel", rep_r.flagged, rep_r.scores, rep_r.suggested_labels, t_r / t_plain,
        float(np.mean(predict(model_r, data.x_test).argmax(1) == data.y_test)),
        correction_accuracy(changed, ds_r.current_labels, data.y), noise_model=rep_r.noise_model)


def _cleanlab_row(data: Data, labels: np.ndarray, seed: int, t_plain: float, plain_acc: float,
                  row: Callable, val_labels: np.ndarray | None = None) -> np.ndarray:
    """cleanlab on out-of-sample probabilities from 5 trainings; returns those ``(N, C)`` probabilities."""
    oos = np.zeros((labels.size, 10))
    t_cv = 0.0
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(folds.split(data.x, labels)):
        m, t, _ = fit(data, data.x[tr], labels[tr], seed + k, val_labels=val_labels)
        t_cv += t
        oos[te] = predict(m, data.x[te])
    row("cleanlab 5-fold", *cleanlab_verdict(labels, oos), best_other(oos, labels), t_cv / t_plain, plain_acc)
    return oos


#: K-fold mode's saved parts: name in the ``.npz`` -> :class:`~fld_train.folds.KFoldResult` attribute.
KFOLD_PARTS = {"oof": "oof_probs", "dynamics": "dynamics_probs", "votes": "neighbour_votes"}


def _kfold_row(data: Data, labels: np.ndarray, seed: int, t_plain: float, plain_acc: float,
               row: Callable) -> dict[str, np.ndarray]:
    """fld-train's K-fold mode: 5 trainings, with training dynamics and out-of-fold kNN votes; returns
    the parts it scores (``kfold_<part>_classes`` / ``_values``, as :func:`kfold_parts` reads them)."""
    pl.seed_everything(seed, verbose=False)
    start = time.perf_counter()
    kf = kfold_discovery(lambda: make_model(data),
                         TensorDataset(torch.from_numpy(data.x), torch.from_numpy(labels)), 10,
                         folds=5, make_trainer=partial(make_trainer, data.epochs), batch_size=data.batch_size, seed=seed)
    row("fld-train K-fold", kf.report.flagged, kf.report.scores, kf.report.suggested_labels,
        (time.perf_counter() - start) / t_plain, plain_acc, noise_model=kf.report.noise_model)
    return {f"kfold_{name}_{field}": getattr(getattr(kf, attribute), field)
            for name, attribute in KFOLD_PARTS.items() for field in ("classes", "values")}


def kfold_parts(saved: Any) -> dict[str, SparseProbs] | None:
    """K-fold mode's ``oof``, ``dynamics`` and ``votes`` parts of a saved run (``None`` if it has none)."""
    if "kfold_oof_classes" not in saved.files:
        return None
    return {name: SparseProbs(saved[f"kfold_{name}_classes"], saved[f"kfold_{name}_values"]) for name in KFOLD_PARTS}


def _baseline_rows(data: Data, labels: np.ndarray, seed: int, fld: FakeLabelDiscovery,
                   model: pl.LightningModule, time_ratio: float, plain_acc: float, row: Callable) -> None:
    """AUM, kNN vote, conf<0.7 and k-means vote, from the flag run's store and final model."""
    store = fld.store
    aum = store.mean_margin()
    row("AUM", aum < 0, 1 / (1 + np.exp(np.clip(aum, -50, 50))),
        best_other(store.model_probs().to_dense(10), labels), time_ratio, plain_acc)
    emb = store.embeddings.astype(np.float32)
    agreement, dist = knn.label_agreement(emb, labels, 10, k=10)
    row("kNN", dist.argmax(1) != labels, 1 - agreement, best_other(dist, labels), time_ratio, plain_acc)
    probs = predict(model, data.x)
    p_given = probs[np.arange(labels.size), labels]
    row("conf<0.7", p_given < 0.7, 1 - p_given, best_other(probs, labels), time_ratio, plain_acc)
    row("k-means vote", *kmeans_vote(emb, labels, seed), time_ratio, plain_acc)


def kmeans_vote(emb: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flags (the cluster's majority is another label), scores (1 - the given label's share of the
    cluster) and suggestions (the cluster's most common other label) of a 100-cluster k-means vote."""
    import faiss

    x = np.ascontiguousarray(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
    km = faiss.Kmeans(x.shape[1], 100, niter=25, seed=seed, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    assign = assign[:, 0]
    counts = np.zeros((100, 10))
    np.add.at(counts, (assign, labels), 1)
    share = counts[assign, labels] / counts[assign].sum(1)
    return counts[assign].argmax(1) != labels, 1 - share, best_other(counts[assign], labels)


def flag_run(data: Data, spec: str, seed: int):
    """One ``action="flag"`` training on noisy labels: ``(store, labels, noise_mask)`` (the other
    benchmarks re-score this store)."""
    labels, mask = noisy_labels(data, spec, seed)
    fld = discovery()
    fit(data, data.x, labels, seed, [fld])
    return fld.store, labels, mask


def discovery(**options: Any) -> FakeLabelDiscovery:
    """The callback every benchmark run uses: 10 classes, a check every 2 epochs, no TensorBoard,
    ``action="flag"`` unless ``options`` say otherwise (they override any argument)."""
    return FakeLabelDiscovery(10, **{"check_every_n_epochs": 2, "action": "flag", "tensorboard": False, **options})


def bench_parser(doc: str, noise: list[str], *, seeds: bool = True) -> argparse.ArgumentParser:
    """The options every detection-style benchmark shares: dataset, noise settings, threads and
    (``seeds``) the seeds to average over."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--noise", nargs="+", default=noise,
                        help="kind:rate, kind in symmetric, pairflip, instance, clustered, none")
    parser.add_argument("--model", choices=["auto", "mlp", "cnn1d", "small-cnn-aug"], default="auto",
                        help="auto: an MLP on digits, a 1-D CNN on MNIST-1D, a small CNN on CIFAR-10; "
                             "small-cnn-aug: the small CNN on flipped and shifted images, one-cycle "
                             "schedule, 12 epochs (images only)")
    parser.add_argument("--data-dir", default=None, help="cifar10: folder with train/ and test/ ImageFolder trees")
    parser.add_argument("--subset", type=int, default=20_000, help="cifar10: training images to use")
    parser.add_argument("--epochs", type=int, default=None, help="override the dataset's training epochs")
    parser.add_argument("--lr", type=float, default=None, help="override the dataset's Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=None, help="override the dataset's batch size")
    parser.add_argument("--threads", type=int, default=2)
    if seeds:
        parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return parser


def quiet_torch(threads: int) -> None:
    """Fix torch's thread count (two runs side by side would slow each other), silence warnings and
    Lightning's info lines."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def start(args: argparse.Namespace) -> Data:
    """Fix torch's thread count, silence warnings and Lightning's info lines, load ``--dataset`` with
    ``--model`` (another model than the dataset's trains at its own learning rate) and the
    ``--epochs`` / ``--lr`` / ``--batch-size`` overrides."""
    quiet_torch(args.threads)
    data = DATASETS[args.dataset](args)
    model = getattr(args, "model", "auto")
    if model == "small-cnn-aug":
        if data.model != "small-cnn":
            raise SystemExit(f"--model small-cnn-aug trains on images; --dataset {args.dataset} is not one")
        data = replace(data, model=model, **AUGMENTED_CNN)
    elif model not in ("auto", data.model):
        data = replace(data, model=model, lr=None,
                       epochs=MLP_EPOCHS.get(args.dataset, data.epochs) if model == "mlp" else 40)
    overrides = {name: getattr(args, name, None) for name in ("epochs", "lr", "batch_size")}
    return replace(data, **{name: value for name, value in overrides.items() if value is not None})


def describe(dataset: str, model: str, epochs: int, lr: float | None = None, monitor: str | None = None) -> str:
    """``"mnist1d (cnn1d, 60 epochs, Adam at 0.01)"``: what a table's numbers were trained with (with
    ``monitor``, also that half the test set validated)."""
    extra = "" if monitor is None else f"; half the test set validates, {monitor}"
    return f"{dataset} ({model}, {epochs} epochs{'' if lr is None else f', Adam at {lr:g}'}{extra})"


def mean_rows(per_seed: list[dict[str, tuple[float, ...]]]) -> dict[str, tuple[float, ...]]:
    """Average each row's numbers over the seeds (rows keyed alike in every seed)."""
    return {key: tuple(statistics.mean(v) for v in zip(*(s[key] for s in per_seed))) for key in per_seed[0]}


COLUMNS = ("precision", "recall", "f1", "auroc", "flagged_share", "correction", "relabels_right", "test_acc",
           "time")
#: Columns printed as percentages.
SHARES = ("flagged_share", "correction", "relabels_right")


def print_table(title: str, per_seed: list[dict[str, dict[str, float]]], seeds: list[int] | None = None) -> None:
    """One setting's table: each method's columns averaged over the seeds (NaN-aware). A method that
    only some seeds measured is averaged over those and its name says which (``seeds`` names them)."""
    print(f"\n{title}")
    print("| method | precision | recall | F1 | AUROC | flagged | correction | relabels right | test acc. "
          "| time vs plain |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    seeds = list(range(len(per_seed))) if seeds is None else seeds
    for method in dict.fromkeys(m for rows in per_seed for m in rows):
        rows = [r[method] for r in per_seed if method in r]
        mean = {c: float(np.nanmean([r[c] for r in rows])) if not all(np.isnan(r[c]) for r in rows)
                else float("nan") for c in COLUMNS}
        name = method if len(rows) == len(per_seed) else \
            f"{method} (seeds {[s for s, r in zip(seeds, per_seed) if method in r]})"
        print(f"| {name} | " + " | ".join(
            "-" if np.isnan(mean[c]) else (f"{mean[c]:.1%}" if c in SHARES
                                             else f"{mean[c]:.2f}x" if c == "time" else f"{mean[c]:.3f}")
            for c in COLUMNS) + " |", flush=True)
    for method in dict.fromkeys(m for rows in per_seed for m in rows):
        chosen = [(s, r[method]["noise_model"]) for s, r in zip(seeds, per_seed) if "noise_model" in r.get(method, {})]
        if chosen:
            print(f"{method}: the report's check ranked by the noise model in seeds "
                  f"{[s for s, n in chosen if n]} of {[s for s, _ in chosen]}")
        with_plain = [r[method] for r in per_seed if "plain_acc" in r.get(method, {})]
        if with_plain:
            plain, clean, acc = (float(np.mean([r[key] for r in with_plain]))
                                 for key in ("plain_acc", "clean_acc", "test_acc"))
            gap = f", share of the gap closed {(acc - plain) / (clean - plain):.0%}" if clean > plain else ""
            print(f"{method}: plain training's test accuracy {plain:.3f}, clean training's {clean:.3f}{gap}")


def print_merged(paths: list[str]) -> None:
    """Tables from the ``--json`` files of several runs of one dataset and model: the seeds of all
    files pooled per setting; where two files measured the same method on the same seed (a rerun
    with ``--methods``), the later file's row replaces the earlier one. A method that only some
    seeds measured is averaged over those, and its row says so."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    keys = {(r["dataset"], r.get("model"), r.get("epochs"), r.get("monitor")) for r in runs}
    recipes = {(r.get("lr"), r["batch_size"]) for r in runs if "batch_size" in r}  # recorded since session 10
    if len(keys) != 1 or len(recipes) > 1:
        raise SystemExit("--merge: the files must come from one dataset, model, training recipe and "
                         "--monitor (which halves the test set), got "
                         f"{sorted(map(str, keys))} {sorted(map(str, recipes))}")
    dataset, model, epochs, monitor = keys.pop()
    lr = next(iter(recipes))[0] if recipes else None
    clean: dict[int, float] = {}
    merged: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for r in runs:
        seeds = [int(seed) for seed in r["clean_acc"]]
        clean.update(zip(seeds, r["clean_acc"].values()))
        for spec, per_seed in r["results"].items():
            for seed, rows in zip(seeds, per_seed):
                merged.setdefault(spec, {}).setdefault(seed, {}).update(
                    {method: _upgrade_row(row) for method, row in rows.items()})
    for spec, by_seed in merged.items():
        seeds = sorted(by_seed)
        print_table(f"{describe(dataset, model, epochs, lr, monitor)}, {spec}, mean over seeds {seeds} "
                    f"(clean-label test accuracy {statistics.mean(clean[s] for s in seeds):.3f})",
                    [by_seed[seed] for seed in seeds], seeds)


def _upgrade_row(row: dict[str, float]) -> dict[str, float]:
    """A row of a ``--json`` file written before session 9, when the ``correction`` key held the
    relabel run's relabels right and flag correction was not measured, in today's keys."""
    if "relabels_right" in row:
        return row
    return {**row, "relabels_right": row.get("correction", float("nan")), "correction": float("nan")}


def package_versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on (the venv is installed from version ranges,
    so two sessions may train with different ones)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "lightning", "numpy", "scipy", "faiss-cpu", "faiss-gpu-cu12", "scikit-learn",
                 "cleanlab", "mnist1d"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def machine_facts() -> dict[str, str]:
    """What a run's numbers depend on beside the packages: the instruction set torch's CPU kernels
    dispatch to (``ATEN_CPU_CAPABILITY`` overrides it) and the processor. The same seed trains to a
    different model under another one: floating-point sums round differently, and training amplifies
    that (docs/benchmarks.md, "Reproducibility")."""
    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "processor": model,
            "cpu_count": str(os.cpu_count()), "machine": platform.machine()}


def _read_lines(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return fh.readlines()
    except OSError:
        return []


def parse_options(pairs: list[str], flag: str = "--relabel-options") -> dict[str, Any]:
    """``["uncertain_action=downweight", "k=20"]`` -> ``{"uncertain_action": "downweight", "k": 20}``
    (ints, floats, true/false and none are converted; anything else stays a string). ``flag`` names
    the command-line option in the error for a pair that is not ``name=value``."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"{flag}: {pair!r} is not name=value")
        special = {"true": True, "false": False, "none": None}
        if text.lower() in special:
            options[name] = special[text.lower()]
            continue
        for kind in (int, float):
            try:
                options[name] = kind(text)
                break
            except ValueError:
                continue
        else:
            options[name] = text
    return options


def main() -> None:
    parser = bench_parser(__doc__, ["symmetric:0.2"])
    parser.add_argument("--json", default=None, help="also write every seed's numbers to this file")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="keep each setting's labels, flag-run store and cleanlab probabilities here (.npz)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="print the tables of earlier --json files (seeds pooled) and exit")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                        help="method groups to run (default: all; 'monitor' only with --monitor; kfold: 5 "
                             "more trainings per setting and seed; baselines reuse the flag run)")
    parser.add_argument("--monitor", default=None, metavar="METRIC",
                        help="val_loss or val_acc: half of the test set becomes a validation set with noisy "
                             "labels, every training but K-fold's validates on it, and the 'monitor' method "
                             "runs FakeLabelDiscovery(monitor=METRIC); test accuracy is on the other half")
    parser.add_argument("--relabel-options", nargs="+", default=[], metavar="NAME=VALUE",
                        help="FakeLabelDiscovery options of the relabel run, e.g. uncertain_action=downweight")
    parser.add_argument("--flag-options", nargs="+", default=[], metavar="NAME=VALUE",
                        help="FakeLabelDiscovery options of the flag and monitor runs, e.g. ranking=margin")
    args = parser.parse_args()
    relabel_options = parse_options(args.relabel_options)
    flag_options = parse_options(args.flag_options, "--flag-options")
    if args.merge:
        print_merged(args.merge)
        return
    if args.monitor not in (None, "val_loss", "val_acc"):
        parser.error(f"--monitor: {args.monitor!r} is not logged by the benchmark models; use val_loss or val_acc")
    methods = args.methods or (METHODS if args.monitor else DEFAULT_METHODS)
    if "monitor" in methods and not args.monitor:
        parser.error("--methods monitor needs --monitor val_loss (or val_acc)")
    for flag, options in (("--relabel-options", relabel_options), ("--flag-options", flag_options)):
        if options.get("monitor") and not args.monitor:
            parser.error(f"{flag} monitor=... needs --monitor, which makes the validation set")
    data = start(args)
    if args.monitor:
        data = with_validation(data)

    # Without a validation set, a noise-free setting's plain training is the clean training of its seed:
    # those settings run first and the others take the clean test accuracy from them.
    reuses = [spec for spec in args.noise if is_noise_free(spec) and data.x_val is None]
    clean: dict[int, float] = {}
    everything = {}
    for spec in reuses + [spec for spec in args.noise if spec not in reuses]:
        per_seed = []
        for seed in args.seeds:
            if seed not in clean and spec not in reuses:
                m, _, _ = fit(data, data.x, data.y, seed)
                clean[seed] = float(np.mean(predict(m, data.x_test).argmax(1) == data.y_test))
            rows = run_setting(data, spec, seed, clean.get(seed), methods=tuple(methods), save=args.save_dir,
                               relabel_options=relabel_options, flag_options=flag_options, monitor=args.monitor)
            clean.setdefault(seed, next(iter(rows.values()))["clean_acc"])
            per_seed.append(rows)
        everything[spec] = per_seed
        print_table(f"{describe(args.dataset, data.model, data.epochs, data.lr, args.monitor)}, {spec}, "
                    f"mean over seeds {args.seeds} "
                    f"(clean-label test accuracy {statistics.mean(clean.values()):.3f})", per_seed, args.seeds)
        if args.json:  # after every setting, so a stopped run keeps what it measured
            with open(args.json, "w") as fh:
                json.dump({"dataset": args.dataset, "model": data.model, "epochs": data.epochs, "lr": data.lr,
                           "batch_size": data.batch_size, "monitor": args.monitor, "versions": package_versions(),
                           "machine": machine_facts(),
                           "relabel_options": relabel_options, "flag_options": flag_options,
                           "clean_acc": clean, "results": everything},
                          fh, indent=1)


if __name__ == "__main__":
    main()
