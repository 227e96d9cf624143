import numpy as np
import pytest

from fld_train import knn


@pytest.fixture
def two_clusters() -> tuple[np.ndarray, np.ndarray]:
    """Two tight clusters of 4 points; point 3 sits in cluster A but carries cluster B's label."""
    a = np.array([[1.0, 0.0], [0.99, 0.05], [0.98, -0.05], [0.97, 0.02]])
    b = np.array([[0.0, 1.0], [0.05, 0.99], [-0.05, 0.98], [0.02, 0.97]])
    return np.vstack([a, b]), np.array([0, 0, 0, 1, 1, 1, 1, 1])


def test_search_drops_the_self_match(two_clusters):
    x, _ = two_clusters
    nb = knn.search(x, k=3)
    assert nb.indices.shape == (8, 3)
    assert not np.any(nb.indices == np.arange(8)[:, None])
    # each point's three neighbours are the rest of its cluster
    for i in range(8):
        cluster = set(range(4)) if i < 4 else set(range(4, 8))
        assert set(nb.indices[i]) == cluster - {i}
    assert np.all(np.diff(nb.similarities, axis=1) <= 1e-6)  # nearest first


def test_agreement_on_constructed_example(two_clusters):
    x, labels = two_clusters
    agreement, dist = knn.label_agreement(x, labels, num_classes=2, k=3)
    # point 3 (label 1) sits among three label-0 points; points 0-2 see two 0s and point 3's 1
    np.testing.assert_allclose(agreement[:4], [2 / 3, 2 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(agreement[4:], 1.0)
    np.testing.assert_allclose(dist[3], [1.0, 0.0])
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)


def test_duplicates_still_exclude_exactly_one_row():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    nb = knn.search(x, k=2)
    for i in range(3):
        assert i not in nb.indices[i]
        assert set(nb.indices[i]) == {0, 1, 2} - {i}


def test_k_larger_than_dataset_pads_with_minus_one():
    nb = knn.search(np.eye(3), k=5)
    assert nb.indices.shape == (3, 5)
    assert np.all(nb.indices[:, 2:] == -1)
    dist = knn.neighbour_label_distribution(nb, np.array([0, 1, 1]), 2)
    np.testing.assert_allclose(dist[0], [0.0, 1.0])


def test_chunked_search_equals_single_chunk(rng):
    x = rng.normal(size=(300, 8))
    a = knn.search(x, k=5, chunk_size=1000)
    b = knn.search(x, k=5, chunk_size=7)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_float16_embeddings_are_accepted(two_clusters):
    x, labels = two_clusters
    agreement, _ = knn.label_agreement(x.astype(np.float16), labels, num_classes=2, k=3)
    assert agreement[3] == 0.0


@pytest.mark.parametrize(
    ("emb", "match"),
    [
        (np.zeros((0, 4)), "shape \\(N, D\\)"),
        (np.zeros(5), "shape \\(N, D\\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or inf \\(first at row 0\\)"),
    ],
)
def test_bad_embeddings_get_a_clear_error(emb, match):
    with pytest.raises(ValueError, match=match):
        knn.search(emb, k=1)


def test_bad_k_names_the_argument():
    with pytest.raises(ValueError, match="`k` must be an int >= 1, got 0"):
        knn.search(np.eye(3), k=0)


def test_labels_out_of_range_are_refused(two_clusters):
    x, labels = two_clusters
    with pytest.raises(ValueError, match="num_classes=2"):
        knn.label_agreement(x, labels + 1, num_classes=2, k=3)


def _clustered(n: int, d: int = 32, classes: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Classes spread along their own 4-d subspace, as learned embeddings are (low intrinsic dimension)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    spread = np.einsum("nr,nrd->nd", rng.normal(size=(n, 4)), rng.normal(size=(classes, 4, d))[y])
    return rng.normal(size=(classes, d))[y] + 0.5 * spread + 0.05 * rng.normal(size=(n, d)), y


@pytest.mark.parametrize("d", [32, 12])  # 32: product-quantised codes + re-ranking; 12: float lists
def test_ivf_index_finds_most_true_neighbours_and_repeats_itself(d):
    x, _ = _clustered(6000, d=d)
    exact = knn.search(x, k=10, index="exact")
    ivf = knn.search(x, k=10, index="ivf")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.indices, ivf.indices)])
    assert recall >= 0.85, recall  # a guard; the 0.9 target is measured at N = 1M by benchmarks/knn_scale.py
    assert not np.any(ivf.indices == np.arange(6000)[:, None])
    np.testing.assert_array_equal(knn.search(x, k=10, index="ivf").indices, ivf.indices)


def test_auto_index_is_exact_for_small_n(monkeypatch):
    x, _ = _clustered(500)
    np.testing.assert_array_equal(knn.search(x, k=5).indices, knn.search(x, k=5, index="exact").indices)
    monkeypatch.setattr(knn, "EXACT_SEARCH_MAX", 100)
    approx = knn.search(x, k=5)
    assert approx.indices.shape == (500, 5)


def test_long_searches_log_progress(monkeypatch, caplog):
    monkeypatch.setattr(knn, "PROGRESS_EVERY_S", 0.0)
    with caplog.at_level("INFO", logger="fld_train"):
        knn.search(np.random.default_rng(0).normal(size=(100, 4)), k=3, chunk_size=40)
    assert [r.getMessage() for r in caplog.records][-1].startswith("kNN search: 100/100 queries")


def test_bad_index_kind_names_the_choices():
    with pytest.raises(ValueError, match="`index` must be one of \\{'auto', 'exact', 'ivf'\\}, got 'hnsw'"):
        knn.search(np.eye(3), k=1, index="hnsw")


def test_neighbour_labels_are_sparse_votes(two_clusters):
    x, labels = two_clusters
    votes = knn.neighbour_labels(knn.search(x, k=3), labels, 2)
    assert votes.classes.shape == (8, 3)
    np.testing.assert_allclose(votes.values.sum(axis=1), 1.0)
    np.testing.assert_allclose(votes.to_dense(2)[3], [1.0, 0.0])


def test_cluster_labels_vote_by_cluster_leaving_the_sample_out():
    x, y = _clustered(1000, classes=5)
    noisy = y.copy()
    noisy[:20] = (y[:20] + 1) % 5
    votes = knn.cluster_labels(x, noisy, 5, clusters=5)
    dense = votes.to_dense(5)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0)
    assert np.mean(dense[:20].argmax(axis=1) == y[:20]) > 0.9  # the cluster outvotes the wrong label
    assert np.mean(dense[20:].argmax(axis=1) == noisy[20:]) > 0.95
    np.testing.assert_array_equal(knn.cluster_labels(x, noisy, 5, clusters=5).classes, votes.classes)
    assert knn.default_clusters(1437, 10) == 71 and knn.default_clusters(50, 10) == 10


def test_cluster_labels_on_few_points_per_cluster_prints_no_faiss_warning(capfd):
    x, y = _clustered(300, classes=3)
    knn.cluster_labels(x, y, 3)  # default_clusters: 15 clusters of about 20 points, fewer than FAISS's 39
    captured = capfd.readouterr()
    assert "WARNING" not in captured.out + captured.err


def test_search_of_some_queries_returns_their_rows_of_the_full_search(rng):
    x = rng.normal(size=(200, 8))
    full = knn.search(x, k=5)
    rows = np.array([3, 0, 150, 199])
    some = knn.search(x, k=5, queries=rows, chunk_size=3)
    np.testing.assert_array_equal(some.indices, full.indices[rows])
    np.testing.assert_allclose(some.similarities, full.similarities[rows], rtol=1e-6)


@pytest.mark.parametrize(("queries", "error", "match"), [
    (np.array([0, 200]), ValueError, r"`queries` must be sample ids in \[0, 200\), got 200"),
    (np.array([0.5]), TypeError, "`queries` must be a 1-D array of sample ids"),
])
def test_bad_queries_name_the_argument(rng, queries, error, match):
    with pytest.raises(error, match=match):
        knn.search(rng.normal(size=(200, 8)), k=5, queries=queries)


def test_vote_brier_equals_the_dense_computation(rng):
    n, c, width = 300, 4, 12
    labels = rng.integers(0, c, n)
    ids = rng.integers(0, n, (n, width))
    ids[:5, 7:] = -1  # missing neighbours, as an IVF index returns them
    ids[5] = -1  # a sample without any
    candidates = (1, 3, 7, 12)
    got = knn.vote_brier(ids, labels, labels, candidates)
    for col, k in enumerate(candidates):
        brier = []
        for i in range(n):
            found = ids[i, :k][ids[i, :k] >= 0]
            votes = np.bincount(labels[found], minlength=c) / max(found.size, 1)
            brier.append(((votes - np.eye(c)[labels[i]]) ** 2).sum())
        assert got[col] == pytest.approx(np.mean(brier))


def test_vote_brier_refuses_candidates_beyond_the_neighbours():
    with pytest.raises(ValueError, match=r"`candidates` must be neighbour counts in \[1, 3\], got \(5,\)"):
        knn.vote_brier(np.zeros((2, 3), dtype=int), np.zeros(2, int), np.zeros(2, int), (5,))


def _blobs(rng, per_class=300, c=4):
    truth = np.repeat(np.arange(c), per_class)
    return rng.normal(size=(c, 16))[truth] * 10 + rng.normal(size=(truth.size, 16)), truth


def test_choose_k_takes_few_neighbours_on_clean_labels_and_many_on_noisy_ones(rng):
    x, truth = _blobs(rng)
    assert knn.choose_k(x, truth, 4) == 5  # every count predicts clean labels perfectly: the smallest
    noisy = truth.copy()
    flip = rng.random(truth.size) < 0.4
    noisy[flip] = rng.integers(0, 4, flip.sum())
    assert knn.choose_k(x, noisy, 4) == 100  # each vote's noise shrinks as 1/k inside a pure blob
    assert knn.choose_k(x, noisy, 4, sample=300) == knn.choose_k(x, noisy, 4, sample=300)


def test_choose_k_drops_candidates_the_data_cannot_fill(rng):
    x, truth = _blobs(rng, per_class=6)  # 24 samples: 5, 10 and 20 neighbours exist
    noisy = truth.copy()
    noisy[::3] = (noisy[::3] + 1) % 4
    assert knn.choose_k(x, noisy, 4) in (5, 10, 20)
    with pytest.raises(ValueError, match="`candidates` must be positive ints, got \\(0,\\)"):
        knn.choose_k(x, truth, 4, candidates=(0,))
    with pytest.raises(ValueError, match="`sample` must be an int >= 1, got 0"):
        knn.choose_k(x, truth, 4, sample=0)


@pytest.mark.parametrize("sample", [10_000, 200])  # one search cut to k, or a sample first and a second search
def test_auto_neighbours_equal_a_search_with_the_chosen_k(rng, sample):
    x, truth = _blobs(rng, per_class=100)
    noisy = truth.copy()
    noisy[::4] = (noisy[::4] + 1) % 4
    k = knn.choose_k(x, noisy, 4, sample=sample)
    found = knn.auto_neighbours(x, noisy, 4, sample=sample)
    np.testing.assert_array_equal(found.indices, knn.search(x, k=k).indices)


def test_auto_neighbours_on_an_ivf_index_reuse_the_choosing_search_for_its_rows(rng):
    x, truth = _blobs(rng, per_class=300)
    found = knn.auto_neighbours(x, truth, 4, sample=300, index="ivf")
    k = found.indices.shape[1]
    assert k == knn.choose_k(x, truth, 4, sample=300, index="ivf") == 5  # clean labels: the smallest
    rows = np.sort(np.random.default_rng(0).choice(x.shape[0], size=300, replace=False))  # seed 0's sample
    rest = np.setdiff1d(np.arange(x.shape[0]), rows)
    chosen_from = knn.search(x, k=100, index="ivf", queries=rows)  # the largest candidate, cut to k
    np.testing.assert_array_equal(found.indices[rows], chosen_from.indices[:, :k])
    np.testing.assert_array_equal(found.indices[rest], knn.search(x, k=k, index="ivf", queries=rest).indices)
    assert (found.indices >= 0).all() and (found.indices != np.arange(x.shape[0])[:, None]).all()


def test_choose_k_keeps_large_counts_within_the_neighbour_budget(rng, monkeypatch):
    x, truth = _blobs(rng)
    noisy = truth.copy()
    flip = rng.random(truth.size) < 0.4
    noisy[flip] = rng.integers(0, 4, flip.sum())
    monkeypatch.setattr(knn, "AUTO_NEIGHBOUR_SLOTS", 1200 * 30)  # 1,200 samples: up to k = 30
    assert knn.choose_k(x, noisy, 4) == 30
    monkeypatch.setattr(knn, "AUTO_NEIGHBOUR_SLOTS", 1)  # 5 and 10 always remain
    assert knn.choose_k(x, noisy, 4) == 10
