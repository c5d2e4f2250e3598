"""Corpus partitioning for packing at scale: k-means centroids fit on a sample.

The minimum-spanning-tree packer needs a partition's embeddings on one worker.
The pipeline fits centroids on a deterministic sample of the corpus, assigns
every document to its nearest centroid, and packs each partition in parallel.
"""

from __future__ import annotations

import numpy as np

from synth.knn import normalized, spherical_kmeans


def fit_centroids(sample: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Spherical k-means (cosine) on ``sample``; k-means++ seeding with a fixed seed.

    A thin use of :func:`synth.knn.spherical_kmeans`, the project's one k-means.

    Args:
        sample: ``[n, d]`` embeddings (any norm; they are normalised here).
        k: number of centroids; capped at the number of distinct samples.
        iterations: Lloyd iterations.
        seed: seeds the k-means++ draws, so the same sample gives the same centroids.

    Returns:
        ``[k', d]`` unit-norm centroids, ``k' <= k``.
    """
    points = normalized(sample)
    k = max(1, min(k, len(np.unique(points, axis=0))))
    return spherical_kmeans(points, k, seed, iterations=iterations, init="kmeans++")


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid for each embedding (ties: lowest index)."""
    return np.argmax(normalized(embeddings) @ centroids.T, axis=1)
