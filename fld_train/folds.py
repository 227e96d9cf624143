"""K-fold mode: K fits on K folds, out-of-fold predictions and training dynamics in one report.

The expensive, most careful mode (the single run of :class:`~fld_train.FakeLabelDiscovery` is the
default). Each of the K fits trains on K-1 folds with the callback recording training dynamics, then
predicts every sample of the held-out fold with a model that never saw it (its out-of-fold
probabilities, as cleanlab uses) and finds its neighbours in that model's embedding space. The score
combines, per sample, the out-of-fold probabilities, the training dynamics of the K-1 fits that
trained on it, and the out-of-fold neighbour votes (:func:`combine_folds`); the report also counts in
how many of the K fits the model predicted another class than the given one (``fold_misclassified``).

By default the out-of-fold probabilities are a quarter of the model witness (``oof_weight=0.25``) and
the training dynamics the rest. Measured on digits, MNIST-1D (two recipes) and CIFAR-10
(docs/benchmarks.md, "K-fold mode: how much the out-of-fold probabilities weigh"): the dynamics rank
wrong labels better (AUROC highest, or within 0.003 of it, with no out-of-fold share), but when the
fits memorise their labels the dynamics follow them and too few samples are flagged; a quarter of
out-of-fold probabilities keeps most of that recall. Against the former half share it ranked as well or
better in all 14 noisy settings, flagged fewer clean labels, and lost F1 in one (by 0.025; by 0.001
in two more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from fld_train import knn, scoring
from fld_train._validation import check_float, check_int, check_k, check_labels
from fld_train.callback import FakeLabelDiscovery
from fld_train.capture import find_head
from fld_train.dataset import RelabeledDataset
from fld_train.report import LabelReport
from fld_train.sparse import SparseProbs
from fld_train.store import summarise_logits

#: Default share of the out-of-fold probabilities in K-fold mode's model witness (see :func:`combine_folds`
#: and the module docstring for how it was chosen).
OOF_WEIGHT = 0.25
_OOF_HINT = "1 ranks with the out-of-fold probabilities alone, as cleanlab does."


@dataclass(frozen=True)
class KFoldResult:
    """What :func:`kfold_discovery` found.

    Attributes:
        report: the :class:`~fld_train.LabelReport` (flags judge the given labels; nothing changed).
        fold_of: ``(N,)`` the fold in which each sample was held out.
        oof_probs: out-of-fold probabilities of each sample's top classes.
        fold_misclassified: ``(N,)`` in how many of the K fits the model predicted another class
            than the given one (out-of-fold for one fit, at the end of training for the others).
        dynamics_probs: each sample's mean softmax over the epochs of the K-1 fits that trained on it.
        neighbour_votes: each sample's out-of-fold kNN vote (its neighbours' labels in the embedding
            space of the fit that held it out).

    ``oof_probs``, ``dynamics_probs`` and ``neighbour_votes`` are the parts :func:`combine_folds`
    scores: pass them again with other weights to re-score without training.
    """

    report: LabelReport
    fold_of: np.ndarray
    oof_probs: SparseProbs
    fold_misclassified: np.ndarray
    dynamics_probs: SparseProbs
    neighbour_votes: SparseProbs


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """``(N,)`` fold id per sample: each class is shuffled and dealt round-robin over the folds."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = (offset + np.arange(members.size)) % folds
        offset += members.size
    return fold_of


class _FoldRecorder(FakeLabelDiscovery):
    """The callback without its checks: a fold's fit only records training dynamics (the K-fold
    report scores every sample once, after the last fold)."""

    def _check(self, trainer: pl.Trainer, epoch: int, *, final: bool = False) -> None:
        del trainer, epoch, final


def _default_trainer(callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(max_epochs=10, callbacks=callbacks, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)


@torch.no_grad()
def _predict(
    model: pl.LightningModule, num_classes: int, head_name: str | None, loader: DataLoader
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings (the head's input) of every sample, in loader order, in eval mode."""
    _, head = find_head(model, num_classes, head_name)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = head.register_forward_hook(
        lambda module, args, output: seen.append((args[0].detach().flatten(1).float().cpu(),
                                                  output.detach().float().cpu())))
    was_training = model.training
    model.eval()
    try:
        for x, _, _ in loader:
            model(x.to(model.device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat([s[1] for s in seen]).numpy(), torch.cat([s[0] for s in seen]).numpy()


def kfold_discovery(
    make_model: Callable[[], pl.LightningModule],
    dataset: Dataset,
    num_classes: int,
    *,
    folds: int = 5,
    make_trainer: Callable[[list[pl.Callback]], pl.Trainer] | None = None,
    batch_size: int = 128,
    num_workers: int = 0,
    k: int | str = "auto",
    top_classes: int = 10,
    head: str | None = None,
    seed: int = 0,
    oof_weight: float = OOF_WEIGHT,
    model_weight: float = scoring.MODEL_WEIGHT,
    ranking: str = "auto",
) -> KFoldResult:
    """Find wrong labels with K fits on K folds.

    Args:
        make_model: returns a fresh LightningModule (one per fold) whose ``forward`` returns logits
            and whose ``training_step`` reads ``(x, y, idx)`` batches.
        dataset: map-style dataset of ``(x, y)`` items, or a :class:`~fld_train.RelabeledDataset`
            (its current labels train the folds; its original labels are judged).
        num_classes: number of classes C.
        folds: K, at least 2.
        make_trainer: returns a ``Trainer`` given the callbacks to use (default: 10 epochs, no
            logger, no checkpoints). Called once per fold.
        batch_size: training and prediction batch size.
        num_workers: DataLoader workers.
        k: neighbours in the out-of-fold kNN vote, or ``"auto"`` (chosen per fold by
            :func:`fld_train.knn.auto_neighbours`).
        top_classes: classes per sample whose probabilities are kept.
        head: dotted name of the classifier layer, if the automatic search picks the wrong one.
        seed: seeds the fold assignment.
        oof_weight: the out-of-fold probabilities' share of the model witness, in ``[0, 1]``; the
            training dynamics have the rest (see :func:`combine_folds`). Lower it for models that do
            not memorise their labels (it ranks better), raise it for long trainings that do.
        model_weight: the model witness's share of the posterior, in ``[0, 1]``; the out-of-fold
            kNN vote has the rest (the callback's ``model_weight``).
        ranking: ``"auto"``, ``"margin"`` or ``"noise_model"`` (see :func:`fld_train.scoring.evaluate`).

    Returns:
        A :class:`KFoldResult`.
    """
    folds = check_int("folds", folds, minimum=2, hint="K-fold mode trains K models.")
    oof_weight = check_float("oof_weight", oof_weight, low=0.0, high=1.0, hint=_OOF_HINT)
    model_weight = check_float("model_weight", model_weight, low=0.0, high=1.0)
    ranking = scoring.check_ranking(ranking, None)
    k = check_k(k)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    data = dataset if isinstance(dataset, RelabeledDataset) else RelabeledDataset(dataset, num_classes=num_classes)
    given = check_labels("the dataset's labels", data.original_labels, num_classes=num_classes)
    n = given.size
    if n < 2 * folds:
        raise ValueError(f"`folds`={folds} needs at least {2 * folds} samples; the dataset has {n}.")
    make_trainer = make_trainer or _default_trainer
    fold_of = stratified_folds(data.current_labels, folds, seed)
    kk = min(top_classes, num_classes)
    oof_cls, oof_val = np.full((n, kk), -1, dtype=np.int64), np.zeros((n, kk))
    dyn_cls, dyn_val = np.full((n, kk * folds), -1, dtype=np.int64), np.zeros((n, kk * folds))
    width = min(max(knn.K_CANDIDATES) if k == "auto" else k, n - 1)
    vote_cls, vote_val = np.full((n, width), -1, dtype=np.int64), np.zeros((n, width))
    fits, misclassified = np.zeros(n), np.zeros(n, dtype=np.int64)
    margin_sum, oof_given = np.zeros(n), np.zeros(n)
    last_epoch = 0
    predict_loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    for f in range(folds):
        train_idx, held = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        fld = _FoldRecorder(num_classes, action="flag", head=head, tensorboard=False, top_classes=top_classes)
        model = make_model()
        make_trainer([fld]).fit(model, DataLoader(Subset(data, train_idx), batch_size=batch_size,
                                                  shuffle=True, num_workers=num_workers))
        store = fld.store
        trained = store.seen
        dyn = store.model_probs()
        dyn_cls[trained, f * kk:(f + 1) * kk] = dyn.classes[trained]
        dyn_val[trained, f * kk:(f + 1) * kk] = dyn.values[trained]
        fits[trained] += 1
        margin_sum[trained] += store.mean_margin()[trained]
        misclassified[trained] += ~store.correct_last[trained]

        logits, emb = _predict(model, num_classes, head, predict_loader)
        out = summarise_logits(held, given[held], given[held], logits[held], None, kk)
        oof_cls[held], oof_val[held], oof_given[held] = out.top_classes, out.top_probs, out.given_prob
        last_epoch = int(store.last_epoch.max())
        misclassified[held] += ~out.correct
        neighbours = (knn.auto_neighbours(emb, data.current_labels, num_classes) if k == "auto"
                      else knn.search(emb, k=min(k, n - 1)))
        votes = knn.neighbour_labels(neighbours, data.current_labels, num_classes)
        vote_cls[held, : votes.classes.shape[1]] = votes.classes[held]
        vote_val[held, : votes.values.shape[1]] = votes.values[held]

    dyn_val /= np.maximum(fits, 1)[:, None]
    oof, dynamics, votes = SparseProbs(oof_cls, oof_val), SparseProbs(dyn_cls, dyn_val), SparseProbs(vote_cls, vote_val)
    evaluation = combine_folds(
        given, oof, dynamics, votes, num_classes=num_classes, oof_weight=oof_weight, model_weight=model_weight,
        ranking=ranking, extra_signals={
            "oof_given_prob": oof_given,
            "aum_margin": margin_sum / np.maximum(fits, 1),
            "fold_misclassified": misclassified.astype(np.float64),
        },
    )
    report = LabelReport.from_evaluation(evaluation, given, data.current_labels, epoch=last_epoch,
                                         reviews=data.reviews, num_classes=num_classes)
    return KFoldResult(report=report, fold_of=fold_of, oof_probs=oof, fold_misclassified=misclassified,
                       dynamics_probs=dynamics, neighbour_votes=votes)


def combine_folds(
    given_labels: np.ndarray,
    oof_probs: SparseProbs,
    dynamics_probs: SparseProbs,
    neighbour_votes: SparseProbs,
    *,
    num_classes: int,
    oof_weight: float = OOF_WEIGHT,
    model_weight: float = scoring.MODEL_WEIGHT,
    ranking: str = "auto",
    extra_signals: dict[str, np.ndarray] | None = None,
) -> scoring.Evaluation:
    """K-fold mode's scoring: flag mode's :func:`~fld_train.scoring.evaluate` on a model witness that
    mixes out-of-fold probabilities with in-training dynamics.

    The model witness is ``oof_weight * oof_probs + (1 - oof_weight) * dynamics_probs``; the posterior
    is ``model_weight`` times that plus ``1 - model_weight`` times the neighbour votes.

    Args:
        given_labels: ``(N,)`` the labels being judged.
        oof_probs: out-of-fold probabilities (:attr:`KFoldResult.oof_probs`).
        dynamics_probs: mean softmax of the fits that trained on each sample
            (:attr:`KFoldResult.dynamics_probs`).
        neighbour_votes: out-of-fold kNN votes (:attr:`KFoldResult.neighbour_votes`).
        num_classes: number of classes C.
        oof_weight: the out-of-fold probabilities' share of the model witness, in ``[0, 1]``.
        model_weight: the model witness's share of the posterior, in ``[0, 1]``.
        ranking: ``"auto"``, ``"margin"`` or ``"noise_model"`` (see :func:`fld_train.scoring.evaluate`).
        extra_signals: name -> ``(N,)`` arrays carried into the evaluation's signals.

    Returns:
        The :class:`~fld_train.scoring.Evaluation` (``action="flag"``: K-fold mode only reports).
    """
    oof_weight = check_float("oof_weight", oof_weight, low=0.0, high=1.0, hint=_OOF_HINT)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    n = check_labels("given_labels", given_labels, num_classes=num_classes).size
    oof, dynamics, votes = (_check_part(name, part, n, num_classes) for name, part in (
        ("oof_probs", oof_probs), ("dynamics_probs", dynamics_probs), ("neighbour_votes", neighbour_votes)))
    return scoring.evaluate(given_labels, oof.average(dynamics, oof_weight), votes, num_classes=num_classes,
                            action="flag", model_weight=model_weight, ranking=ranking,
                            extra_signals=extra_signals)


def _check_part(name: str, part: object, n: int, num_classes: int) -> SparseProbs:
    if not isinstance(part, SparseProbs):
        raise TypeError(f"`{name}` must be a SparseProbs (a KFoldResult attribute), got {type(part).__name__}.")
    return part.check(name, n, num_classes)
