"""k-nearest-neighbour graphs of document embeddings under cosine distance.

Small inputs are searched exactly (blocked matrix products). Larger ones use an
inverted-file search written around matrix products: spherical k-means (with
oversized cells split again) cuts the documents into cells of about ``cell_docs``
documents, each document is compared with every member of its ``probes`` nearest
cells, and the comparisons run cell by cell as one matrix product per cell. The
cost is linear in the number of documents for a fixed cell size (the centroid
assignment aside, a small share up to millions of documents), memory stays within
a few hundred bytes per document besides the embeddings, and the result is
deterministic for a seed and machine, which HNSW graphs built on several threads
are not. faiss's IVF scans lists query by query and was about 7x slower here.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_MAX_DOCS = 10_000
_BLOCK_CELLS = 1 << 24  # similarity entries per matrix-product block (64 MiB of float32)
_KMEANS_ITERATIONS = 8
_KMEANS_SAMPLE_PER_CELL = 32


def normalized(embeddings: np.ndarray) -> np.ndarray:
    """Returns float32 rows scaled to unit length (all-zero rows stay zero)."""
    x = np.array(embeddings, dtype=np.float32, copy=True)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-d, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """``embeddings`` itself when already C-ordered unit float32 rows, else a normalised copy."""
    if (
        isinstance(embeddings, np.ndarray)
        and embeddings.dtype == np.float32
        and embeddings.ndim == 2
        and embeddings.flags.c_contiguous
        and all(
            np.allclose(np.einsum("ij,ij->i", block, block), 1.0, rtol=0, atol=1e-4)
            for block in np.array_split(embeddings, max(1, len(embeddings) // 65_536))
        )
    ):
        return embeddings
    return normalized(embeddings)


def knn_graph(
    embeddings: np.ndarray,
    k: int = 10,
    seed: int = 0,
    *,
    exact_max_docs: int = EXACT_MAX_DOCS,
    cell_docs: int = 1024,
    probes: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Finds each document's ``k`` nearest other documents by cosine distance.

    Args:
        embeddings: ``[n, d]`` vectors; they need not be normalised. Unit-length
            float32 rows in C order are used in place, other input is copied.
        k: neighbours per document.
        seed: seeds the k-means of the approximate search.
        exact_max_docs: up to this many documents the search is exact.
        cell_docs: mean documents per cell of the approximate search.
        probes: cells searched per document by the approximate search.

    Returns:
        ``(neighbours, distances)``, both ``[n, k]``, each row sorted by increasing
        cosine distance (``1 - cosine similarity``). A document never lists itself;
        where fewer than ``k`` neighbours exist the row ends in ``-1`` / ``inf``.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    x = _unit_rows(embeddings)
    if len(x) <= exact_max_docs:
        candidates, sims = _exact_candidates(x, k)
    else:
        candidates, sims = _cell_candidates(x, k, seed, cell_docs, probes)
    return _best(candidates, sims, k)


def _top(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row (unsorted)."""
    k = min(k, sims.shape[1])
    idx = np.argpartition(sims, sims.shape[1] - k, axis=1)[:, -k:]
    return idx, np.take_along_axis(sims, idx, axis=1)


def _exact_candidates(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    width = min(k, max(n - 1, 0))
    candidates = np.full((n, max(width, 1)), -1, dtype=np.int64)
    sims = np.full((n, max(width, 1)), -np.inf, dtype=np.float32)
    if width == 0:
        return candidates, sims
    rows = max(1, _BLOCK_CELLS // n)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = x[start:stop] @ x.T
        block[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        candidates[start:stop], sims[start:stop] = _top(block, width)
    return candidates, sims


def spherical_kmeans(x: np.ndarray, cells: int, seed: int, iterations: int = _KMEANS_ITERATIONS) -> np.ndarray:
    """Unit-length centroids of ``cells`` clusters of the unit rows ``x`` (Lloyd's iterations).

    Starts from ``cells`` distinct rows drawn with ``seed``; an emptied cluster keeps its centroid.
    """
    rng = np.random.default_rng(seed)
    centroids = x[np.sort(rng.choice(len(x), cells, replace=False))].copy()
    for _ in range(iterations):
        label = _nearest_cells(x, centroids, 1)[:, 0]
        sums = np.zeros_like(centroids)
        np.add.at(sums, label, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0
        centroids[filled] = sums[filled] / norms[filled]
    return centroids


def cell_centroids(x: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """About ``cells`` centroids that split the unit rows ``x`` into cells of similar size.

    k-means runs on a sample of ``32 * cells`` rows; a cell holding more than twice
    the mean share of the sample is split by k-means of its own sample rows, so a
    dense topic does not become one oversized cell (the search cost of a cell grows
    with the square of its size).
    """
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(len(x), min(len(x), cells * _KMEANS_SAMPLE_PER_CELL), replace=False))]
    centroids = spherical_kmeans(sample, cells, seed)
    label = _nearest_cells(sample, centroids, 1)[:, 0]
    counts = np.bincount(label, minlength=cells)
    mean = len(sample) / cells
    parts = [centroids[counts <= 2 * mean]]
    order, bounds = _groups(label, cells)
    for cell in np.flatnonzero(counts > 2 * mean).tolist():
        members = sample[order[bounds[cell] : bounds[cell + 1]]]
        parts.append(spherical_kmeans(members, math.ceil(len(members) / mean), seed + 1 + cell))
    return np.concatenate(parts)


def _nearest_cells(x: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """``[n, probes]`` indices of each row's most similar centroids, nearest first."""
    probes = min(probes, len(centroids))
    out = np.empty((len(x), probes), dtype=np.int64)
    rows = max(1, _BLOCK_CELLS // len(centroids))
    for start in range(0, len(x), rows):
        block = x[start : start + rows] @ centroids.T
        idx, top = _top(block, probes)
        order = np.argsort(-top, axis=1, kind="stable")
        out[start : start + rows] = np.take_along_axis(idx, order, axis=1)
    return out


def _groups(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` sorted by key, and each key's ``[start, stop)`` bounds in them."""
    order = np.argsort(keys, kind="stable")
    bounds = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=bounds[1:])
    return order, bounds


def _cell_candidates(
    x: np.ndarray, k: int, seed: int, cell_docs: int, probes: int
) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    centroids = cell_centroids(x, max(1, math.ceil(n / cell_docs)), seed)
    cells = len(centroids)
    probed = _nearest_cells(x, centroids, probes)
    probes = probed.shape[1]
    per_cell = k + 1  # the home cell also returns the document itself
    candidates = np.full((n, probes * per_cell), -1, dtype=np.int64)
    sims = np.full((n, probes * per_cell), -np.inf, dtype=np.float32)

    members, member_bounds = _groups(probed[:, 0], cells)
    visits, visit_bounds = _groups(probed.ravel(), cells)
    for cell in range(cells):
        docs = members[member_bounds[cell] : member_bounds[cell + 1]]
        if len(docs) == 0:
            continue
        base = x[docs].T
        width = min(per_cell, len(docs))
        flat = visits[visit_bounds[cell] : visit_bounds[cell + 1]]
        rows = max(1, _BLOCK_CELLS // len(docs))
        for start in range(0, len(flat), rows):
            chunk = flat[start : start + rows]
            queries, slot = np.divmod(chunk, probes)
            idx, top = _top(x[queries] @ base, width)
            columns = slot[:, None] * per_cell + np.arange(width)
            candidates[queries[:, None], columns] = docs[idx]
            sims[queries[:, None], columns] = top
    sims[candidates == np.arange(n)[:, None]] = -np.inf
    return candidates, sims


def _best(candidates: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar candidates per row, sorted, as (neighbours, distances)."""
    n = len(candidates)
    width = min(k, candidates.shape[1])
    idx, top = _top(sims, width)
    order = np.argsort(-top, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    chosen = np.take_along_axis(np.take_along_axis(candidates, idx, axis=1), order, axis=1)
    neighbours = np.full((n, k), -1, dtype=np.int64)
    distances = np.full((n, k), np.inf, dtype=np.float32)
    found = np.isfinite(top)
    neighbours[:, :width] = np.where(found, chosen, -1)
    distances[:, :width] = np.where(found, np.clip(1.0 - top, 0.0, 2.0), np.inf)
    return neighbours, distances
