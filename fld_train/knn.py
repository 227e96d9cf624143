"""kNN label consistency over embeddings with FAISS.

Embeddings are L2-normalised float32 and searched by inner product (cosine similarity). An exact
index serves small N; an inverted-file (IVF) index serves large N; the GPU serves both when FAISS
sees one. Vectors are converted, added and queried in chunks, so a float16 store of a million rows
is never copied whole to float32 outside the index; each sample's own match is dropped.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from fld_train._validation import check_choice, check_int, check_labels
from fld_train.sparse import SparseProbs

log = logging.getLogger("fld_train")

#: Above this many samples ``index="auto"`` uses an IVF index instead of the exact one.
EXACT_SEARCH_MAX = 10_000
INDEX_KINDS = ("auto", "exact", "ivf")
#: IVF: at least this many lists visited per query, and at least ``SCAN_AT_LEAST`` vectors scanned
#: (more lists for small N, whose lists are short); candidates re-ranked exactly per neighbour wanted.
MIN_NPROBE, SCAN_AT_LEAST, REFINE_FACTOR = 8, 2_000, 4
#: Seconds between progress messages of a long search (logger ``fld_train``, level INFO).
PROGRESS_EVERY_S = 10.0
#: Vectors per FAISS call unless ``chunk_size`` says otherwise.
CHUNK_SIZE = 16_384
#: ``k="auto"`` chooses among these neighbour counts (see :func:`choose_k`).
K_CANDIDATES = (5, 10, 20, 30, 50, 100)
#: ... judging them on at most this many randomly chosen samples.
CHOOSE_K_SAMPLE = 10_000
#: ... and only counts above 10 whose N x k neighbour slots fit this budget: the vote arrays and the
#: search's re-ranking grow with N x k (at N = 1M, k = 100 took a check from 53 s to 173 s and
#: 14 GB), so from N = 100,000 up the largest candidates drop out (only 5 and 10 at N = 1M).
AUTO_NEIGHBOUR_SLOTS = 10_000_000


@dataclass(frozen=True)
class Neighbours:
    """Result of :func:`search`.

    Attributes:
        indices: ``(N, k)`` int64 neighbour ids (into the searched set), nearest first; -1 if fewer
            than ``k`` neighbours exist.
        similarities: ``(N, k)`` float32 cosine similarities.
    """

    indices: np.ndarray
    similarities: np.ndarray


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is a hard dependency
        raise ImportError(
            "fld-train needs FAISS for the kNN check: `pip install faiss-cpu` "
            "(or `pip install 'fld-train[gpu]'` for GPU FAISS)."
        ) from err
    return faiss


def _normalised(emb: np.ndarray, start: int, stop: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start:stop`` (of ``rows``, when given) as L2-normalised contiguous float32."""
    x = np.array(emb[start:stop] if rows is None else emb[rows[start:stop]], dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        first = start + int(np.flatnonzero(~finite)[0])
        bad = first if rows is None else int(rows[first])
        raise ValueError(
            f"`embeddings` contain NaN or inf (first at row {bad}); the model diverged or the "
            "captured layer is not the penultimate one."
        )
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: about ``sqrt(n)``, with at least 39 training points per list."""
    return int(max(1, min(np.sqrt(n), n // 39)))


def default_nprobe(n: int, nlist: int) -> int:
    """Lists visited per query: at least :data:`MIN_NPROBE`, enough to scan :data:`SCAN_AT_LEAST` vectors."""
    return int(min(nlist, max(MIN_NPROBE, np.ceil(SCAN_AT_LEAST * nlist / n))))


def _ivf_spec(n: int, d: int, on_gpu: bool) -> tuple[str, bool]:
    """FAISS factory string for an approximate index, and whether it re-ranks exactly.

    On the CPU, inverted lists of 4-bit product-quantised codes scanned with SIMD ("fast scan"),
    with the best ``k_factor * k`` candidates re-ranked on the full vectors: about 3x faster than
    scanning float vectors at the same recall. GPU FAISS has no fast-scan codes; it scans floats.
    """
    nlist = ivf_lists(n)
    if on_gpu or d % 8:
        return f"IVF{nlist},Flat", False
    return f"IVF{nlist},PQ{d // 4}x4fs,RFlat", True


def _build_index(faiss: ModuleType, emb: np.ndarray, kind: str, nprobe: int | None, use_gpu: bool | None,
                 chunk_size: int, seed: int):
    n, d = emb.shape
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is None:
        use_gpu = gpus > 0
    elif use_gpu and gpus == 0:
        warnings.warn("use_gpu=True but FAISS sees no GPU; searching on the CPU.", stacklevel=3)
        use_gpu = False
    if kind == "auto":
        kind = "exact" if n <= EXACT_SEARCH_MAX else "ivf"
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        spec, refine = _ivf_spec(n, d, use_gpu)
        index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 64 * ivf.nlist), replace=False))
        index.train(_normalised(emb[sample], 0, sample.size))
        ivf.nprobe = min(ivf.nlist, nprobe if nprobe is not None else default_nprobe(n, ivf.nlist))
        if refine:
            index.k_factor = REFINE_FACTOR
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    for start in range(0, n, chunk_size):
        index.add(_normalised(emb, start, min(start + chunk_size, n)))
    return index


def search(
    embeddings: np.ndarray,
    *,
    k: int = 10,
    use_gpu: bool | None = None,
    index: str = "auto",
    nprobe: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    seed: int = 0,
    queries: np.ndarray | None = None,
) -> Neighbours:
    """Find each sample's ``k`` nearest other samples by cosine similarity.

    Args:
        embeddings: ``(N, D)`` feature vectors; any float dtype (a float16 store is read in chunks).
        k: neighbours per sample, excluding the sample itself.
        use_gpu: ``None`` uses a GPU when ``faiss.get_num_gpus() > 0``.
        index: ``"exact"`` (flat inner product), ``"ivf"`` (approximate: :func:`ivf_lists`
            inverted lists of product-quantised codes, candidates re-ranked exactly; see
            :func:`_ivf_spec`), or ``"auto"``: exact up to :data:`EXACT_SEARCH_MAX` samples, IVF above.
        nprobe: IVF lists visited per query (default :func:`default_nprobe`); more is slower and
            closer to exact.
        chunk_size: vectors per FAISS call.
        seed: seeds the IVF training sample and k-means, so results are repeatable.
        queries: ``(M,)`` ids of the samples whose neighbours are wanted (default: all of them);
            the neighbours come from all ``N`` samples.

    Returns:
        :class:`Neighbours` with ``(N, k)`` arrays (``(M, k)`` with ``queries``), row ``i`` for
        sample ``i`` (``queries[i]``).
    """
    k = check_int("k", k, minimum=1)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    emb = _as_embeddings(embeddings)
    rows = None if queries is None else _query_ids(queries, emb.shape[0])
    return _query(emb, _open(emb, index, nprobe, use_gpu, chunk_size, seed), k, rows, chunk_size)


def _as_embeddings(embeddings: np.ndarray) -> np.ndarray:
    emb = embeddings if isinstance(embeddings, np.ndarray) else np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"`embeddings` must have shape (N, D) with N, D > 0, got {emb.shape}.")
    return emb


def _open(emb: np.ndarray, index: str, nprobe: int | None, use_gpu: bool | None, chunk_size: int, seed: int):
    """The FAISS index over ``emb``, after checking the index options."""
    kind = check_choice("index", index, INDEX_KINDS, hint="'auto' picks by the number of samples.")
    if nprobe is not None:
        nprobe = check_int("nprobe", nprobe, minimum=1)
    return _build_index(_faiss(), emb, kind, nprobe, use_gpu, chunk_size, seed)


def _query(emb: np.ndarray, faiss_index, k: int, rows: np.ndarray | None, chunk_size: int) -> Neighbours:
    """Each query's ``k`` nearest other samples in ``faiss_index`` (queries: ``rows``, or all)."""
    n = emb.shape[0]
    m = n if rows is None else rows.size
    began = last = time.perf_counter()
    kk = min(k + 1, n)
    out_idx = np.full((m, k), -1, dtype=np.int64)
    out_sim = np.zeros((m, k), dtype=np.float32)
    for start in range(0, m, chunk_size):
        stop = min(start + chunk_size, m)
        sims, ids = faiss_index.search(_normalised(emb, start, stop, rows), kk)
        query = (np.arange(start, stop) if rows is None else rows[start:stop])[:, None]
        # drop the self match; where duplicates hide it, drop the last neighbour instead
        is_self = ids == query
        no_self = ~is_self.any(axis=1)
        is_self[no_self, kk - 1] = True
        keep = ~is_self
        out_idx[start:stop, : kk - 1] = ids[keep].reshape(stop - start, kk - 1)
        out_sim[start:stop, : kk - 1] = sims[keep].reshape(stop - start, kk - 1)
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            log.info("kNN search: %d/%d queries in %.0f s", stop, m, now - began)
    return Neighbours(indices=out_idx, similarities=out_sim)


def _query_ids(queries: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(queries)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise TypeError(f"`queries` must be a 1-D array of sample ids, got {rows.dtype} with shape {rows.shape}.")
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = rows[(rows < 0) | (rows >= n)][0]
        raise ValueError(f"`queries` must be sample ids in [0, {n}), got {int(bad)}.")
    return rows.astype(np.int64)


def vote_brier(
    neighbour_ids: np.ndarray,
    query_labels: np.ndarray,
    labels: np.ndarray,
    candidates: tuple[int, ...] = K_CANDIDATES,
) -> np.ndarray:
    """Brier score of the kNN vote as a predictor of each query's own label, per neighbour count.

    The vote of a sample's first ``k`` neighbours is a leave-one-out prediction of its label (the
    sample is not its own neighbour), so its Brier score, ``sum_j (v_j - [j == y])^2`` averaged over
    the queries, measures how well ``k`` neighbours predict labels: small ``k`` votes are noisy,
    large ones reach into other classes. Computed from label counts, without an ``M x C`` array.

    Args:
        neighbour_ids: ``(M, K)`` neighbour ids, nearest first, -1 where missing (:attr:`Neighbours.indices`).
        query_labels: ``(M,)`` each query's label.
        labels: ``(N,)`` labels of the searched samples.
        candidates: neighbour counts to score, each at most ``K``.

    Returns:
        ``(len(candidates),)`` mean Brier score per candidate (``1.0`` for a query with no neighbour).
    """
    ids = np.asarray(neighbour_ids)
    m, width = ids.shape
    if not candidates or min(candidates) < 1 or max(candidates) > width:
        raise ValueError(f"`candidates` must be neighbour counts in [1, {width}], got {tuple(candidates)}.")
    if m == 0:
        return np.ones(len(candidates))
    valid = ids >= 0
    lab = np.where(valid, np.asarray(labels)[np.where(valid, ids, 0)], -1)
    # before[i, a]: how many of neighbours 0..a-1 share neighbour a's label (rank within a stable sort)
    order = np.argsort(lab, axis=1, kind="stable")
    ranked = np.take_along_axis(lab, order, axis=1)
    pos = np.broadcast_to(np.arange(width), ranked.shape)
    starts = np.ones(ranked.shape, dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    rank = pos - np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    before = np.empty_like(rank)
    np.put_along_axis(before, order, rank, axis=1)
    # adding a neighbour whose label already has c votes adds 2c + 1 to the sum of squared counts
    sq = np.cumsum(np.where(valid, 2 * before + 1, 0), axis=1, dtype=np.float64)
    hits = np.cumsum(valid & (lab == np.asarray(query_labels)[:, None]), axis=1, dtype=np.float64)
    count = np.cumsum(valid, axis=1, dtype=np.float64)
    cols = np.asarray(candidates) - 1
    nk = count[:, cols]
    safe = np.maximum(nk, 1.0)
    brier = np.where(nk > 0, sq[:, cols] / safe**2 - 2.0 * hits[:, cols] / safe + 1.0, 1.0)
    return brier.mean(axis=0)


def choose_k(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    candidates: tuple[int, ...] = K_CANDIDATES,
    sample: int = CHOOSE_K_SAMPLE,
    use_gpu: bool | None = None,
    index: str = "auto",
    seed: int = 0,
) -> int:
    """The neighbour count whose kNN vote best predicts the labels, by leave-one-out Brier score.

    Model selection without a noise mask: the ``k`` nearest neighbours' vote is a prediction of a
    sample's label that never saw the sample, and the ``k`` whose votes predict the held-out labels
    best (lowest mean Brier score) is taken. Under symmetric noise the noisy labels' distribution
    is an affine function of the true one, so the same ``k`` also estimates the true labels best.
    Small ``k`` gives noisy votes (one of ten neighbours more or less moves the vote by 0.1), large
    ``k`` reaches into other classes; the best ``k`` grows with the noise. Measured in
    docs/benchmarks.md ("Choosing k").

    Args:
        embeddings: ``(N, D)`` features.
        labels: ``(N,)`` labels that vote (the ones training uses).
        num_classes: number of classes C.
        candidates: neighbour counts to choose from; those above ``N - 1`` are dropped, and those
            above 10 whose ``N x k`` exceeds :data:`AUTO_NEIGHBOUR_SLOTS` (a cost budget).
        sample: judge on at most this many samples, chosen at random (the neighbours come from all).
        use_gpu: see :func:`search`.
        index: see :func:`search`.
        seed: seeds the sample (and the IVF index).

    Returns:
        The chosen ``k``; the smallest of the best when several tie.
    """
    return _auto(embeddings, labels, num_classes, candidates, sample, use_gpu, index, seed, search_all=False)[0]


def auto_neighbours(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    sample: int = CHOOSE_K_SAMPLE,
    use_gpu: bool | None = None,
    index: str = "auto",
    seed: int = 0,
) -> Neighbours:
    """Every sample's neighbours, as many as :func:`choose_k` chooses (``k="auto"`` of the check).

    The search that chooses ``k`` also serves the vote: its rows (every row when ``N <= sample``)
    keep their nearest ``k`` of the largest candidate's neighbours, and only the other rows are
    searched again, on the same index. With the exact index that is what a search with the chosen
    ``k`` returns; with IVF the sampled rows' neighbours were re-ranked from a larger candidate pool
    (``REFINE_FACTOR`` x the largest candidate), so they can only be closer.

    Args:
        embeddings: ``(N, D)`` features.
        labels: ``(N,)`` labels that vote.
        num_classes: number of classes C.
        sample: see :func:`choose_k`.
        use_gpu: see :func:`search`.
        index: see :func:`search`.
        seed: see :func:`choose_k`.

    Returns:
        :class:`Neighbours` with ``(N, k)`` arrays, ``k`` the chosen count.
    """
    return _auto(embeddings, labels, num_classes, K_CANDIDATES, sample, use_gpu, index, seed, search_all=True)[1]


def _auto(
    embeddings: np.ndarray, labels: np.ndarray, num_classes: int, candidates: tuple[int, ...], sample: int,
    use_gpu: bool | None, index: str, seed: int, *, search_all: bool,
) -> tuple[int, Neighbours | None]:
    """The chosen ``k`` and, with ``search_all``, every sample's neighbours at that ``k``: one index
    serves both searches, and when the sample is every row, one search."""
    emb = _as_embeddings(embeddings)
    labels = check_labels("labels", labels, num_classes=num_classes, length=emb.shape[0])
    sample = check_int("sample", sample, minimum=1)
    n = labels.size
    if not candidates or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in candidates):
        raise ValueError(f"`candidates` must be positive ints, got {candidates!r}.")
    usable = sorted({k for k in candidates if k <= n - 1 and (k <= 10 or n * k <= AUTO_NEIGHBOUR_SLOTS)})
    usable = usable or [max(1, min(min(candidates), n - 1))]
    if n < 2:
        return usable[0], (search(emb, k=usable[0], use_gpu=use_gpu, index=index, seed=seed) if search_all else None)
    every = n <= sample
    rows = None if every else np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    built = _open(emb, index, None, use_gpu, CHUNK_SIZE, seed)
    found = _query(emb, built, usable[-1], rows, CHUNK_SIZE)
    brier = vote_brier(found.indices, labels if every else labels[rows], labels, tuple(usable))
    k = int(usable[int(np.argmin(brier))])
    if not search_all:
        return k, None
    if every:
        return k, Neighbours(np.ascontiguousarray(found.indices[:, :k]), np.ascontiguousarray(found.similarities[:, :k]))
    # the sampled rows keep the choosing search's nearest k; only the others are searched again
    rest = np.setdiff1d(np.arange(n), rows, assume_unique=True)
    more = _query(emb, built, k, rest, CHUNK_SIZE)
    indices, similarities = np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=np.float32)
    indices[rows], similarities[rows] = found.indices[:, :k], found.similarities[:, :k]
    indices[rest], similarities[rest] = more.indices, more.similarities
    return k, Neighbours(indices, similarities)


def neighbour_labels(neighbours: Neighbours, labels: np.ndarray, num_classes: int) -> SparseProbs:
    """Each sample's neighbours' labels, each worth ``1 / (number of neighbours)``.

    Args:
        neighbours: output of :func:`search` over the same samples as ``labels``.
        labels: ``(N,)`` labels of the searched samples.
        num_classes: number of classes C.

    Returns:
        :class:`~fld_train.sparse.SparseProbs` with ``(N, k)`` pairs (label -1 where a neighbour is
        missing); summed by class, they are the neighbour label distribution.
    """
    labels = check_labels("labels", labels, num_classes=num_classes, length=neighbours.indices.shape[0])
    ids = neighbours.indices
    valid = ids >= 0
    count = valid.sum(axis=1, keepdims=True)
    values = np.divide(valid, count, out=np.zeros(ids.shape), where=count > 0)
    return SparseProbs(np.where(valid, labels[np.where(valid, ids, 0)], -1), values)


def neighbour_label_distribution(
    neighbours: Neighbours, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Share of each sample's neighbours that carry each label, as a dense ``(N, C)`` array.

    For small C; large C should keep :func:`neighbour_labels`. Rows sum to 1 (all zeros for a
    sample without neighbours).
    """
    return neighbour_labels(neighbours, labels, num_classes).to_dense(num_classes)


def label_agreement(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    k: int = 10,
    use_gpu: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """kNN label agreement of every sample.

    Args:
        embeddings: ``(N, D)`` features.
        labels: ``(N,)`` labels the neighbours vote with.
        num_classes: number of classes C.
        k: neighbours per sample.
        use_gpu: see :func:`search`.

    Returns:
        ``(agreement, distribution)``: ``(N,)`` share of neighbours carrying the sample's own label,
        and the dense ``(N, C)`` neighbour label distribution.
    """
    labels = check_labels("labels", labels, num_classes=num_classes, length=np.shape(embeddings)[0])
    dist = neighbour_label_distribution(search(embeddings, k=k, use_gpu=use_gpu), labels, num_classes)
    return dist[np.arange(labels.size), labels], dist


def default_clusters(n: int, num_classes: int) -> int:
    """Clusters for :func:`cluster_labels`: 10 per class, at most one per 20 samples, at least C."""
    return int(max(min(10 * num_classes, n // 20), min(num_classes, n)))


def cluster_labels(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    clusters: int | None = None,
    top_k: int = 10,
    seed: int = 0,
) -> SparseProbs:
    """Cluster consistency: each sample's cluster's label distribution, the sample itself left out.

    The classic recipe (k-means on the embeddings, a majority vote per cluster) as a signal: FAISS
    spherical k-means on the L2-normalised embeddings, then for each sample the share of each label
    among the other members of its cluster.

    Args:
        embeddings: ``(N, D)`` features.
        labels: ``(N,)`` labels that vote.
        num_classes: number of classes C.
        clusters: number of clusters (default :func:`default_clusters`).
        top_k: label shares kept per sample (the largest).
        seed: seeds k-means.

    Returns:
        :class:`~fld_train.sparse.SparseProbs` with ``(N, top_k)`` pairs; a sample alone in its
        cluster gets no votes.
    """
    labels = check_labels("labels", labels, num_classes=num_classes, length=np.shape(embeddings)[0])
    n = labels.size
    clusters = default_clusters(n, num_classes) if clusters is None else check_int("clusters", clusters, minimum=1)
    faiss = _faiss()
    x = _normalised(np.asarray(embeddings), 0, n)
    # ~20 points per cluster is by design: min_points_per_centroid=1 silences FAISS's "too few points" warning
    km = faiss.Kmeans(x.shape[1], min(clusters, n), niter=20, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1,
                      max_points_per_centroid=max(256, n // max(clusters, 1) + 1))
    km.train(x)
    _, assign = km.index.search(x, 1)
    assign = assign[:, 0]
    # (clusters x C) label counts; per sample only its cluster's top_k labels: no N x C array
    counts = np.bincount(assign * num_classes + labels, minlength=km.k * num_classes).reshape(km.k, num_classes)
    t = min(top_k, num_classes)
    top = np.argpartition(-counts, t - 1, axis=1)[:, :t]
    classes = top[assign].astype(np.int64)
    votes = np.take_along_axis(counts, top, axis=1)[assign].astype(np.float64)
    votes -= classes == labels[:, None]  # leave the sample itself out
    others = (counts.sum(axis=1)[assign] - 1).astype(np.float64)[:, None]
    values = np.divide(votes, others, out=np.zeros_like(votes), where=others > 0)
    return SparseProbs(np.where(values > 0, classes, -1), np.maximum(values, 0.0))
