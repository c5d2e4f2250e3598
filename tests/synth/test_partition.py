import numpy as np

from synth.partition import assign, fit_centroids


def clustered(n_clusters=5, per=40, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    points = np.concatenate([c + 0.05 * rng.normal(size=(per, dim)) for c in centers])
    return points.astype(np.float32), np.repeat(np.arange(n_clusters), per)


def test_kmeans_recovers_planted_clusters():
    points, truth = clustered()
    labels = assign(points, fit_centroids(points, k=5, seed=3))
    for cluster in range(5):
        assert len(set(labels[truth == cluster])) == 1
    assert len(set(labels)) == 5


def test_centroids_are_deterministic_and_capped():
    points, _ = clustered()
    assert np.array_equal(fit_centroids(points, 5, seed=1), fit_centroids(points, 5, seed=1))
    assert len(fit_centroids(points[:3], k=10)) == 3
    assert np.allclose(np.linalg.norm(fit_centroids(points, 4), axis=1), 1.0, atol=1e-5)
