"""kNN label consistency over embeddings with FAISS.

Embeddings are L2-normalised float32 and searched by inner product (cosine similarity). An exact
index serves small N; an IVF index serves large N; the GPU serves both when FAISS sees one. Queries
run in chunks so memory stays bounded, and each sample's own match is dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from fld_train._validation import check_int, check_labels

#: Above this many samples an IVF index replaces the exact one.
EXACT_SEARCH_MAX = 200_000


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


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(
            f"`embeddings` contain NaN or inf (first at row {bad}); the model diverged or the "
            "captured layer is not the penultimate one."
        )
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.maximum(norms, 1e-12)
    return x


def _build_index(faiss: ModuleType, x: np.ndarray, use_gpu: bool | None):
    n, d = x.shape
    if n <= EXACT_SEARCH_MAX:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(train)
        index.nprobe = 16
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is None:
        use_gpu = gpus > 0
    if use_gpu:
        if gpus == 0:
            warnings.warn("use_gpu=True but FAISS sees no GPU; searching on the CPU.", stacklevel=3)
        else:
            index = faiss.index_cpu_to_all_gpus(index)
    index.add(x)
    return index


def search(
    embeddings: np.ndarray,
    *,
    k: int = 10,
    use_gpu: bool | None = None,
    chunk_size: int = 16_384,
) -> Neighbours:
    """Find each sample's ``k`` nearest other samples by cosine similarity.

    Args:
        embeddings: ``(N, D)`` feature vectors; any float dtype.
        k: neighbours per sample, excluding the sample itself.
        use_gpu: ``None`` uses a GPU when ``faiss.get_num_gpus() > 0``.
        chunk_size: queries per FAISS call.

    Returns:
        :class:`Neighbours` with ``(N, k)`` arrays.
    """
    k = check_int("k", k, minimum=1)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"`embeddings` must have shape (N, D) with N, D > 0, got {emb.shape}.")
    faiss = _faiss()
    x = _normalise(emb)
    n = x.shape[0]
    index = _build_index(faiss, x, use_gpu)
    kk = min(k + 1, n)
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_sim = np.zeros((n, k), dtype=np.float32)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims, ids = index.search(x[start:stop], kk)
        query = np.arange(start, stop)[:, None]
        # drop the self match; where duplicates hide it, drop the last neighbour instead
        is_self = ids == query
        no_self = ~is_self.any(axis=1)
        is_self[no_self, kk - 1] = True
        keep = ~is_self
        ids = ids[keep].reshape(stop - start, kk - 1)
        sims = sims[keep].reshape(stop - start, kk - 1)
        out_idx[start:stop, : kk - 1] = ids
        out_sim[start:stop, : kk - 1] = sims
    return Neighbours(indices=out_idx, similarities=out_sim)


def neighbour_label_distribution(
    neighbours: Neighbours, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Share of each sample's neighbours that carry each label.

    Args:
        neighbours: output of :func:`search` over the same samples as ``labels``.
        labels: ``(N,)`` labels of the searched samples.
        num_classes: number of classes C.

    Returns:
        ``(N, C)`` float64 rows summing to 1 (all zeros for a sample without neighbours).
    """
    labels = check_labels("labels", labels, num_classes=num_classes, length=neighbours.indices.shape[0])
    ids = neighbours.indices
    valid = ids >= 0
    n = ids.shape[0]
    flat = np.arange(n)[:, None] * num_classes + labels[np.where(valid, ids, 0)]
    dist = np.bincount(flat[valid], minlength=n * num_classes).reshape(n, num_classes).astype(np.float64)
    total = dist.sum(axis=1, keepdims=True)
    return np.divide(dist, total, out=np.zeros_like(dist), where=total > 0)


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
        and the ``(N, C)`` neighbour label distribution.
    """
    labels = check_labels("labels", labels, num_classes=num_classes, length=np.shape(embeddings)[0])
    dist = neighbour_label_distribution(search(embeddings, k=k, use_gpu=use_gpu), labels, num_classes)
    return dist[np.arange(labels.size), labels], dist
