"""k-nearest-neighbour graphs of document embeddings under cosine distance.

Small inputs are searched exactly (blocked matrix products). Larger ones use an
inverted-file search built on matrix products: two-level spherical k-means cuts
the documents into cells of about ``cell_docs`` documents, each document is
compared with every member of its ``probes`` nearest cells, and the comparisons
run cell by cell as one matrix product per cell (a thread per core). Finding a
document's nearest cells is the same search one level up (cells grouped under
about ``sqrt(cells)`` group centroids), so the cost stays close to linear in the
number of documents, memory stays a few hundred bytes per document besides the
embeddings, and the result is deterministic for a seed on a given machine, which
HNSW graphs built on several threads are not. faiss's IVF-Flat scans its lists
query by query and was about 7x slower than this on 2 cores.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.sparse import csr_matrix

EXACT_MAX_DOCS = 10_000
_BLOCK_CELLS = 1 << 24  # similarity entries per matrix-product block (64 MiB of float32)
_KMEANS_ITERATIONS = 8
_KMEANS_SAMPLE_PER_CELL = 32
_GROUP_PROBES = 3


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
    """Column indices and values of the ``k`` largest entries of each row (unsorted).

    Wide rows are first cut down to a few candidates: their columns are dealt into
    ``groups`` groups (about ``4 * k``), and the ``k``-th largest group maximum is a
    bound that at least ``k`` entries of the row reach. Only the entries at or above
    it, seldom many more than ``k``, are ranked; a full selection over every column
    cost about as much as the matrix product that made the row.
    """
    n, cols = sims.shape
    k = min(k, cols)
    groups = 1 << max(6, (4 * k - 1).bit_length())
    if n == 0 or cols < 4 * groups:
        return _select(sims, k)
    span = cols // groups
    maxima = sims[:, : span * groups].reshape(n, span, groups).max(axis=1)
    bound = np.partition(maxima, groups - k, axis=1)[:, groups - k]
    flat = np.flatnonzero(sims >= bound[:, None])
    row = flat // cols
    counts = np.bincount(row, minlength=n)
    if counts.min() < k:  # a row of NaN reaches no bound
        return _select(sims, k)
    first = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    slot = np.arange(len(flat)) - first[row]
    width = int(counts.max())
    values = np.full((n, width), -np.inf, dtype=sims.dtype)
    values[row, slot] = sims.ravel()[flat]
    columns = np.zeros((n, width), dtype=np.int64)
    columns[row, slot] = flat - row * cols
    idx, top = _select(values, k)
    return np.take_along_axis(columns, idx, axis=1), top


def _select(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top` by a selection over every column."""
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


def spherical_kmeans(
    x: np.ndarray, cells: int, seed: int, iterations: int = _KMEANS_ITERATIONS, init: str = "random"
) -> np.ndarray:
    """Unit-length centroids of ``cells`` clusters of the unit rows ``x`` (Lloyd's iterations, cosine).

    The project's one k-means: the kNN search's cells and the packer's partitions
    (:func:`synth.partition.fit_centroids`) both come from it. Deterministic for a
    ``seed``; an emptied cluster keeps its centroid.

    Args:
        x: ``[n, d]`` unit-length rows, ``n >= cells``.
        cells: number of clusters.
        seed: seeds the starting centroids.
        iterations: Lloyd iterations.
        init: ``random`` starts from ``cells`` distinct rows drawn at once (cheap for the
            thousands of cells of a kNN search); ``kmeans++`` draws them one by one, each
            with probability growing with its squared cosine distance to those drawn
            (spread apart, for a few partitions; needs ``cells`` distinct rows).
    """
    rng = np.random.default_rng(seed)
    if init == "random":
        centroids = x[np.sort(rng.choice(len(x), cells, replace=False))].copy()
    elif init == "kmeans++":
        centroids = _kmeans_plus_plus(x, cells, rng)
    else:
        raise ValueError(f"init must be 'random' or 'kmeans++', got {init!r}")
    for _ in range(iterations):
        label = _nearest_cells(x, centroids, 1)[:, 0]
        members = csr_matrix((np.ones(len(x), dtype=x.dtype), (label, np.arange(len(x)))), shape=(cells, len(x)))
        sums = np.asarray(members @ x, dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0
        centroids[filled] = sums[filled] / norms[filled]
    return centroids


def _kmeans_plus_plus(x: np.ndarray, cells: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding of ``cells`` centroids among the unit rows ``x``, on cosine distance."""
    chosen = [x[rng.integers(len(x))]]
    distance = 1.0 - x @ chosen[0]
    for _ in range(1, cells):
        weights = np.clip(distance, 0, None) ** 2
        total = weights.sum()
        index = rng.choice(len(x), p=weights / total) if total > 0 else rng.integers(len(x))
        chosen.append(x[index])
        distance = np.minimum(distance, 1.0 - x @ x[index])
    return np.stack(chosen)


def _even_kmeans(rows: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Centroids of about ``share`` rows each: k-means, then any cluster over twice
    ``share`` split again by k-means of its rows (a dense topic would otherwise stay
    one oversized cell, and a cell's search cost grows with the square of its size)."""
    centroids = spherical_kmeans(rows, max(1, round(len(rows) / share)), seed)
    label = _nearest_cells(rows, centroids, 1)[:, 0]
    counts = np.bincount(label, minlength=len(centroids))
    order, bounds = _groups(label, len(centroids))
    parts = [centroids[counts <= 2 * share]]
    for cell in np.flatnonzero(counts > 2 * share).tolist():
        members = rows[order[bounds[cell] : bounds[cell + 1]]]
        parts.append(spherical_kmeans(members, math.ceil(len(members) / share), seed + 1 + cell))
    return np.concatenate(parts)


def cell_centroids(x: np.ndarray, cells: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """About ``cells`` centroids of the unit rows ``x`` in two levels, cells of similar size.

    k-means on a sample of ``32 * cells`` rows first finds about ``sqrt(cells)``
    groups; each group's sample rows are then split into cells of about 32 rows.

    Returns:
        ``(centroids, group of each centroid, group centroids)``.
    """
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(len(x), min(len(x), cells * _KMEANS_SAMPLE_PER_CELL), replace=False))]
    tops = spherical_kmeans(sample, math.ceil(math.sqrt(cells)), seed)
    label = _nearest_cells(sample, tops, 1)[:, 0]
    order, bounds = _groups(label, len(tops))
    share = len(sample) / cells
    centroids, parents, kept = [], [], []
    for group in range(len(tops)):
        rows = sample[order[bounds[group] : bounds[group + 1]]]
        if len(rows) == 0:
            continue
        centroids.append(_even_kmeans(rows, share, seed + 1 + group * cells))
        parents.append(np.full(len(centroids[-1]), len(kept)))
        kept.append(group)
    return np.concatenate(centroids), np.concatenate(parents), tops[kept]


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


def _probe_search(
    queries: np.ndarray, base: np.ndarray, base_cell: np.ndarray, query_cells: np.ndarray, cells: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar ``base`` rows in each cell that a query probes.

    ``base_cell[i]`` is base row ``i``'s cell; ``query_cells[q]`` lists the cells
    query ``q`` probes (``-1`` for none). Runs one matrix product per cell against
    the queries probing it. Returns ``[len(queries), probes * k]`` candidate rows
    and similarities, ``-1`` / ``-inf`` where a cell had fewer than ``k`` rows.
    """
    probes = query_cells.shape[1]
    candidates = np.full((len(queries), probes * k), -1, dtype=np.int64)
    sims = np.full((len(queries), probes * k), -np.inf, dtype=np.float32)
    members, member_bounds = _groups(base_cell, cells)
    visits, visit_bounds = _groups(np.where(query_cells < 0, cells, query_cells).ravel(), cells + 1)

    def search(cell: int) -> None:
        rows = members[member_bounds[cell] : member_bounds[cell + 1]]
        if len(rows) == 0:
            return
        basis = base[rows].T
        width = min(k, len(rows))
        flat = visits[visit_bounds[cell] : visit_bounds[cell + 1]]
        step = max(1, _BLOCK_CELLS // len(rows))
        for start in range(0, len(flat), step):
            query, slot = np.divmod(flat[start : start + step], probes)
            idx, top = _top(queries[query] @ basis, width)
            columns = slot[:, None] * k + np.arange(width)
            candidates[query[:, None], columns] = rows[idx]
            sims[query[:, None], columns] = top

    # numpy's selection and gathers hold one core each; a thread per core overlaps
    # them with the matrix products. Every (query, probe) slot is written once, so
    # the result does not depend on scheduling.
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(search, range(cells)))
    return candidates, sims


def _workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cell_candidates(
    x: np.ndarray, k: int, seed: int, cell_docs: int, probes: int
) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    centroids, parent, tops = cell_centroids(x, max(1, math.ceil(n / cell_docs)), seed)
    # each row's nearest cells, searched among the cells of its nearest groups
    near_groups = _nearest_cells(x, tops, _GROUP_PROBES)
    probed = _best(*_probe_search(x, centroids, parent, near_groups, len(tops), probes), probes)[0]
    # the home cell holds the row itself: ask each cell for one more
    candidates, sims = _probe_search(x, x, probed[:, 0], probed, len(centroids), k + 1)
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
