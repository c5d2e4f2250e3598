import numpy as np
import pytest

from synth.knn import cell_centroids, knn_graph, normalized, spherical_kmeans


def topics(n, clusters=20, dim=384, spread=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    label = rng.integers(0, clusters, n)
    x = centers[label] / np.sqrt(dim) + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), label


def exact(x, k):
    x = normalized(x)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, 1 - np.take_along_axis(sims, order, axis=1)


def test_exact_search_matches_brute_force():
    x = np.random.default_rng(1).standard_normal((300, 24)) * 5  # not normalised, float64
    neighbours, distances = knn_graph(x, k=7)
    want, want_dist = exact(x, 7)
    assert neighbours.shape == distances.shape == (300, 7)
    np.testing.assert_array_equal(neighbours, want)
    np.testing.assert_allclose(distances, want_dist, atol=1e-5)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_cell_search_finds_nearly_all_true_neighbours_deterministically():
    x, label = topics(3000)
    neighbours, distances = knn_graph(x, k=10, seed=3, exact_max_docs=0, cell_docs=150)
    want, _ = exact(x, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(neighbours.tolist(), want.tolist())])
    assert recall > 0.9
    assert (neighbours != np.arange(3000)[:, None]).all()
    assert (np.diff(distances, axis=1) >= 0).all()
    assert (label[neighbours] == label[:, None]).mean() > 0.95
    again = knn_graph(x, k=10, seed=3, exact_max_docs=0, cell_docs=150)
    np.testing.assert_array_equal(neighbours, again[0])
    np.testing.assert_array_equal(distances, again[1])


def test_cell_search_distances_are_true_cosine_distances():
    x, _ = topics(1000, dim=32)
    neighbours, distances = knn_graph(x, k=5, exact_max_docs=0, cell_docs=64, probes=2)
    sims = np.einsum("id,ikd->ik", x, x[neighbours])
    np.testing.assert_allclose(distances, 1 - sims, atol=1e-5)


@pytest.mark.parametrize("exact_max_docs", [0, 100])
def test_fewer_documents_than_k_pads_rows(exact_max_docs):
    x = np.eye(4, dtype=np.float32)
    neighbours, distances = knn_graph(x, k=6, exact_max_docs=exact_max_docs, cell_docs=2)
    assert neighbours.shape == (4, 6)
    assert (neighbours[:, 3:] == -1).all() and np.isinf(distances[:, 3:]).all()
    for row, found in enumerate(neighbours[:, :3].tolist()):
        assert sorted(found) == [d for d in range(4) if d != row]


def test_single_and_empty_inputs():
    neighbours, distances = knn_graph(np.ones((1, 8)), k=3)
    assert neighbours.tolist() == [[-1, -1, -1]] and np.isinf(distances).all()
    neighbours, distances = knn_graph(np.ones((0, 8)), k=3)
    assert neighbours.shape == (0, 3)
    with pytest.raises(ValueError):
        knn_graph(np.ones((5, 8)), k=0)


def test_normalized_keeps_zero_rows():
    out = normalized(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_spherical_kmeans_cells_are_pure_and_tighter_than_random_centres():
    x, label = topics(2000, clusters=5, spread=0.3)
    centroids = spherical_kmeans(x, 20, seed=0)
    random_centres = x[np.random.default_rng(0).choice(len(x), 20, replace=False)]
    assert (x @ centroids.T).max(axis=1).mean() > (x @ random_centres.T).max(axis=1).mean() + 0.02
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    assigned = np.argmax(x @ centroids.T, axis=1)
    purity = sum(np.bincount(label[assigned == c]).max() for c in set(assigned.tolist())) / len(x)
    assert purity > 0.95


def test_unit_float32_input_and_scaled_float64_input_agree():
    x, _ = topics(500, dim=32)
    scaled = x.astype(np.float64) * 7
    for exact_max_docs in (0, 1000):
        a = knn_graph(x, k=5, exact_max_docs=exact_max_docs, cell_docs=64)
        b = knn_graph(scaled, k=5, exact_max_docs=exact_max_docs, cell_docs=64)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_cell_centroids_split_a_dominant_topic_into_several_cells():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10, 64))
    label = rng.choice(10, 20000, p=np.r_[0.7, np.full(9, 0.3 / 9)])
    x = centers[label] / 8 + 0.8 * rng.standard_normal((20000, 64)) / 8
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centroids, group, tops = cell_centroids(x, 40, seed=0)
    assert 30 <= len(centroids) <= 60
    assert len(tops) <= 7 and sorted(set(group.tolist())) == list(range(len(tops)))
    home = np.argmax(x @ centroids.T, axis=1)
    counts = np.bincount(home, minlength=len(centroids))
    assert counts.max() <= 2.5 * counts.mean()
    assert len(set(home[label == 0].tolist())) >= 10  # the dominant topic spans many cells
