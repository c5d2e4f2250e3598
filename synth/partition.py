"""Corpus partitioning for packing at scale: k-means centroids fit on a sample.

The minimum-spanning-tree packer needs a partition's embeddings on one worker.
The pipeline fits centroids on a deterministic sample of the corpus, assigns
every document to its nearest centroid, and packs each partition in parallel.
"""

from __future__ import annotations

import numpy as np


def fit_centroids(sample: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Spherical k-means (cosine) on ``sample``; k-means++ seeding with a fixed seed.

    Args:
        sample: ``[n, d]`` embeddings (any norm; they are normalised here).
        k: number of centroids; capped at the number of distinct samples.
        iterations: Lloyd iterations.
        seed: seeds the k-means++ draws, so the same sample gives the same centroids.

    Returns:
        ``[k', d]`` unit-norm centroids, ``k' <= k``.
    """
    points = _unit(np.asarray(sample, dtype=np.float32))
    k = max(1, min(k, len(np.unique(points, axis=0))))
    rng = np.random.default_rng(seed)
    centroids = [points[rng.integers(len(points))]]
    distance = 1.0 - points @ centroids[0]
    for _ in range(1, k):
        weights = np.clip(distance, 0, None) ** 2
        total = weights.sum()
        index = rng.choice(len(points), p=weights / total) if total > 0 else rng.integers(len(points))
        centroids.append(points[index])
        distance = np.minimum(distance, 1.0 - points @ points[index])
    centers = np.stack(centroids)
    for _ in range(iterations):
        labels = assign(points, centers)
        for j in range(len(centers)):
            members = points[labels == j]
            if len(members):
                centers[j] = members.mean(axis=0)
        centers = _unit(centers)
    return centers


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid for each embedding (ties: lowest index)."""
    return np.argmax(_unit(np.asarray(embeddings, dtype=np.float32)) @ centroids.T, axis=1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
