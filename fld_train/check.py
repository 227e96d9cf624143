"""One label check over the per-sample store: kNN votes, combined with the training dynamics, scored.

Framework-free (numpy and FAISS), so the callback, the benchmarks and users outside Lightning run
the same check.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fld_train import knn, scoring
from fld_train._validation import check_k
from fld_train.sparse import SparseProbs
from fld_train.store import SampleStore


def run_check(
    store: SampleStore,
    vote_labels: np.ndarray | None = None,
    *,
    k: int | str = "auto",
    action: str = "flag",
    use_gpu: bool | None = None,
    index: str = "auto",
    max_change_fraction: float = 1.0,
    max_class_change_fraction: float = 1.0,
    max_flag_class_fraction: float = 0.5,
    target_precision: float | None = None,
    uncertain_action: str = "auto",
    cluster_votes: bool = False,
    model_weight: float = scoring.MODEL_WEIGHT,
    ranking: str = "auto",
    previous: scoring.Evaluation | None = None,
) -> scoring.Evaluation:
    """Score every sample of ``store`` and decide an action for each.

    Args:
        store: the per-sample store; it must hold embeddings.
        vote_labels: ``(N,)`` labels the neighbours vote with (what training uses now; default the
            given labels).
        k: neighbours per sample, or ``"auto"``: the count among :data:`fld_train.knn.K_CANDIDATES`
            whose vote best predicts the labels held out (:func:`fld_train.knn.choose_k`).
        action: see :func:`fld_train.scoring.evaluate`.
        use_gpu: see :func:`fld_train.knn.search`.
        index: see :func:`fld_train.knn.search`.
        max_change_fraction: see :func:`fld_train.scoring.evaluate`.
        max_class_change_fraction: see :func:`fld_train.scoring.evaluate`.
        max_flag_class_fraction: see :func:`fld_train.scoring.evaluate`.
        target_precision: see :func:`fld_train.scoring.evaluate`.
        uncertain_action: see :func:`fld_train.scoring.evaluate`.
        cluster_votes: average the kNN vote with the k-means cluster vote
            (:func:`fld_train.knn.cluster_labels`) as the neighbourhood half of the posterior.
        model_weight: see :func:`fld_train.scoring.evaluate`.
        ranking: see :func:`fld_train.scoring.evaluate`.
        previous: see :func:`fld_train.scoring.evaluate`.

    Returns:
        The :class:`~fld_train.scoring.Evaluation`; its ``knn_k`` is the ``k`` used.
    """
    k = check_k(k)
    ranking = scoring.check_ranking(ranking, target_precision)  # before the search, not after
    if store.embeddings is None:
        raise ValueError("the store holds no embeddings yet: record at least one batch before a check.")
    seen = store.seen
    n, c = store.num_samples, store.num_classes
    given = np.where(store.given_labels >= 0, store.given_labels, 0)  # unseen: placeholder 0
    votes_from = given if vote_labels is None else vote_labels
    rows = np.flatnonzero(seen)
    emb = store.embeddings if rows.size == n else store.embeddings[rows]
    neighbours = None
    if rows.size > 1 and k == "auto":
        neighbours = knn.auto_neighbours(emb, votes_from[rows], c, use_gpu=use_gpu, index=index)
        k = neighbours.indices.shape[1]
    elif rows.size > 1:
        neighbours = knn.search(emb, k=min(k, rows.size - 1), use_gpu=use_gpu, index=index)
    k = 1 if k == "auto" else k  # fewer than two samples seen: nothing to choose from
    width = min(k, max(n - 1, 1))
    votes = SparseProbs(np.full((n, width), -1, dtype=np.int64), np.zeros((n, width)))
    if neighbours is not None:
        found = knn.neighbour_labels(neighbours, votes_from[rows], c)
        votes.classes[rows, : found.classes.shape[1]] = found.classes
        votes.values[rows, : found.values.shape[1]] = found.values
        if cluster_votes:
            clustered = knn.cluster_labels(emb, votes_from[rows], c)
            extra = SparseProbs(np.full((n, clustered.classes.shape[1]), -1, dtype=np.int64),
                                np.zeros((n, clustered.classes.shape[1])))
            extra.classes[rows], extra.values[rows] = clustered.classes, clustered.values
            votes = votes.average(extra)
    learned_at_first_sight = (store.first_epoch >= 0) & (store.first_learned_epoch == store.first_epoch)
    evaluation = scoring.evaluate(
        given, store.model_probs(), votes, num_classes=c, seen=seen, action=action,
        current_labels=votes_from, learned_at_first_sight=learned_at_first_sight,
        max_change_fraction=max_change_fraction, max_class_change_fraction=max_class_change_fraction,
        max_flag_class_fraction=max_flag_class_fraction, target_precision=target_precision,
        uncertain_action=uncertain_action, model_weight=model_weight, ranking=ranking,
        previous=previous,
        extra_signals={
            "aum_margin": store.mean_margin(),
            "given_prob_variability": store.given_prob_variability(),
            "first_learned_epoch": store.first_learned_epoch.astype(np.float64),
            "forgetting_events": store.forgetting_events.astype(np.float64),
        },
    )
    return dataclasses.replace(evaluation, knn_k=int(k))
