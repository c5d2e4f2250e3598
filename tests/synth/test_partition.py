import math

import numpy as np

from synth.partition import assign, fit_centroids, partition_centroids


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


def uneven_topics(sizes=(600, 120, 90, 60, 60, 40, 30), dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    return np.concatenate([c + 0.3 * rng.normal(size=(size, dim)) for c, size in zip(centers, sizes)]).astype(np.float32)


def test_partition_centroids_split_what_plain_kmeans_leaves_oversized():
    points = uneven_topics()
    max_docs = 200
    plain = np.bincount(assign(points, fit_centroids(points, k=math.ceil(len(points) / max_docs), seed=0)))
    assert plain.max() > max_docs  # the 600-document topic does not fit one partition
    centroids = partition_centroids(points, len(points), max_docs, seed=0)
    sizes = np.bincount(assign(points, centroids), minlength=len(centroids))
    assert sizes.max() <= max_docs and sizes.sum() == len(points)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(centroids, partition_centroids(points, len(points), max_docs, seed=0))


def test_partition_centroids_scale_the_sample_to_the_corpus():
    points = uneven_topics()
    # the same sample standing for a corpus ten times larger needs ten times the partitions
    small = partition_centroids(points, len(points), 200, seed=0)
    large = partition_centroids(points, 10 * len(points), 200, seed=0)
    assert len(large) >= 5 * len(small)
    per_row = 10
    assert np.bincount(assign(points, large)).max() * per_row <= 200
