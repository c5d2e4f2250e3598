"""Corpus partitioning for packing at scale: k-means centroids fit on a sample.

The minimum-spanning-tree packer needs a partition's embeddings on one worker.
The pipeline fits centroids on a deterministic sample of the corpus
(:func:`partition_centroids`, partitions of bounded size), assigns every document
to its nearest centroid, and packs each partition in parallel.
"""

from __future__ import annotations

import math

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


def partition_centroids(
    sample: np.ndarray, total_docs: int, max_docs: int, *, iterations: int = 20, seed: int = 0, rounds: int = 4
) -> np.ndarray:
    """Centroids that cut a corpus into partitions of at most about ``max_docs`` documents.

    Topics are unevenly sized, so plain k-means with ``ceil(total_docs / max_docs)``
    centroids leaves some partitions several times too large (on ``bench/bench_mst.py``'s
    corpus of ten million, the largest of 50 held 2.7 times its share), and a worker's
    memory and time grow with its partition. Here each partition's size is estimated
    from the sample (its share of the sample times ``total_docs``); one estimated over
    ``max_docs`` is split by k-means of its own sample rows into as many parts as it
    needs, and the check repeats (at most ``rounds`` times) until none is over.

    Args:
        sample: ``[n, d]`` embeddings drawn from the corpus (any norm).
        total_docs: documents in the corpus.
        max_docs: the most documents a partition should hold.
        iterations: Lloyd iterations of each k-means.
        seed: seeds the k-means++ draws.
        rounds: split rounds.

    Returns:
        ``[k, d]`` unit-norm centroids.
    """
    if max_docs < 1:
        raise ValueError(f"max_docs must be positive, got {max_docs}")
    points = normalized(sample)
    centroids = fit_centroids(points, math.ceil(total_docs / max_docs), iterations, seed)
    docs_per_row = total_docs / max(len(points), 1)
    for round_ in range(rounds):
        label = assign(points, centroids)
        counts = np.bincount(label, minlength=len(centroids))
        over = np.flatnonzero(counts * docs_per_row > max_docs)
        if len(over) == 0:
            break
        parts = [centroids[np.setdiff1d(np.arange(len(centroids)), over)]]
        for cluster in over.tolist():
            parts.append(fit_centroids(
                points[label == cluster], math.ceil(counts[cluster] * docs_per_row / max_docs), iterations,
                seed + 1 + round_ * len(centroids) + cluster,
            ))
        centroids = np.concatenate(parts)
    return centroids
