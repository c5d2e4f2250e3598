"""Minimum spanning forests over kNN graphs, and their cut into size-capped clusters.

Edges are ``(i, j, weight)`` triples, given either as a sequence of tuples or as an
``[m, 3]`` array. Every tie is broken by ``(weight, min(i, j), max(i, j))``, so the
forest, the clusters and the orders below depend only on the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

from synth.knn import knn_graph, normalized

Edges = Sequence[tuple[int, int, float]] | np.ndarray


def _edge_arrays(edges: Edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = np.asarray(edges, dtype=np.float64).reshape(-1, 3)
    return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]


def _edge_order(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Edge positions sorted by ``(weight, min endpoint, max endpoint)``."""
    return np.lexsort((np.maximum(u, v), np.minimum(u, v), w))


def minimum_spanning_forest(n: int, neighbours: np.ndarray, distances: np.ndarray) -> list[tuple[int, int, float]]:
    """Kruskal's minimum spanning forest of the undirected kNN graph.

    ``i-j`` and ``j-i`` are one edge (the smaller distance counts); ``-1``
    neighbours and non-finite distances are skipped. Edges are ranked by
    ``(distance, i, j)`` and scipy's Kruskal (union-find in compiled code) runs
    on the ranks, which are distinct, so the forest is unique and does not depend
    on the scipy version. A disconnected graph gives one tree per component.

    Returns:
        ``(i, j, distance)`` with ``i < j``, sorted by ``(distance, i, j)``.
    """
    neighbours = np.asarray(neighbours)
    distances = np.asarray(distances, dtype=np.float64)
    rows = np.broadcast_to(np.arange(len(neighbours))[:, None], neighbours.shape)
    valid = (neighbours >= 0) & np.isfinite(distances) & (neighbours != rows)
    u = np.minimum(rows[valid], neighbours[valid]).astype(np.int64)
    v = np.maximum(rows[valid], neighbours[valid]).astype(np.int64)
    w = distances[valid]
    pair = u * max(n, 1) + v
    first = np.lexsort((w, pair))
    pair, w = pair[first], w[first]
    unique = np.ones(len(pair), dtype=bool)
    unique[1:] = pair[1:] != pair[:-1]
    pair, w = pair[unique], w[unique]
    if len(pair) == 0:
        return []
    u, v = np.divmod(pair, max(n, 1))
    order = np.lexsort((pair, w))
    rank = np.empty(len(u), dtype=np.float64)
    rank[order] = np.arange(1, len(u) + 1)
    tree = minimum_spanning_tree(csr_matrix((rank, (u, v)), shape=(n, n))).tocoo()
    picked = np.sort(tree.data).astype(np.int64) - 1
    chosen = order[picked]
    return list(zip(u[chosen].tolist(), v[chosen].tolist(), w[chosen].tolist()))


def _roots(parent: np.ndarray) -> np.ndarray:
    """Root of every node of a union-find parent array (pointer jumping)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _groups(labels: np.ndarray) -> list[list[int]]:
    """Indices grouped by label; groups sorted inside and by their smallest index."""
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [g.tolist() for g in np.split(order, cuts)] if len(order) else []
    groups.sort(key=lambda g: g[0])
    return groups


def cut_clusters(n: int, edges: Edges, tokens: np.ndarray, max_cluster_tokens: int) -> list[list[int]]:
    """Single linkage along the forest with a token cap.

    Edges join clusters in increasing ``(weight, i, j)`` order; a join whose token
    total would exceed ``max_cluster_tokens`` is refused. Every cluster is thus a
    connected subtree of the forest, and only a single document longer than the
    cap can form a cluster above it.

    Returns:
        Clusters of document indices, each sorted, ordered by their smallest index.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} token counts for {n} documents")
    u, v, w = _edge_arrays(edges)
    order = _edge_order(u, v, w)
    parent = list(range(n))
    size = tokens.tolist()
    for a, b in zip(u[order].tolist(), v[order].tolist()):
        while parent[a] != a:
            parent[a] = a = parent[parent[a]]
        while parent[b] != b:
            parent[b] = b = parent[parent[b]]
        if a != b and size[a] + size[b] <= max_cluster_tokens:
            if a > b:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
    return _groups(_roots(np.asarray(parent, dtype=np.int64)))


def cluster_centroids(
    clusters: Sequence[Sequence[int]], embeddings: np.ndarray, block_docs: int = 65_536
) -> np.ndarray:
    """Unit-length mean of each cluster's unit-length embeddings, ``[len(clusters), d]``.

    Gathers at most ``block_docs`` embeddings at a time.
    """
    sizes = np.fromiter(map(len, clusters), dtype=np.int64, count=len(clusters))
    members = np.fromiter(chain.from_iterable(clusters), dtype=np.int64, count=int(sizes.sum()))
    label = np.repeat(np.arange(len(clusters)), sizes)
    sums = np.zeros((len(clusters), embeddings.shape[1]), dtype=np.float32)
    for start in range(0, len(members), block_docs):
        part = label[start : start + block_docs]
        first = part[0]
        indicator = csr_matrix(
            (np.ones(len(part), dtype=np.float32), (part - first, np.arange(len(part)))),
            shape=(part[-1] - first + 1, len(part)),
        )
        sums[first : part[-1] + 1] += indicator @ normalized(embeddings[members[start : start + block_docs]])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.divide(sums, norms, out=sums, where=norms > 0)


def _token_sums(clusters: Sequence[Sequence[int]], tokens: np.ndarray) -> list[int]:
    sizes = np.fromiter(map(len, clusters), dtype=np.int64, count=len(clusters))
    members = np.fromiter(chain.from_iterable(clusters), dtype=np.int64, count=int(sizes.sum()))
    sums = np.zeros(len(clusters), dtype=np.int64)
    np.add.at(sums, np.repeat(np.arange(len(clusters)), sizes), np.asarray(tokens, dtype=np.int64)[members])
    return sums.tolist()


def merge_small_clusters(
    clusters: Sequence[Sequence[int]],
    embeddings: np.ndarray,
    tokens: np.ndarray,
    min_cluster_tokens: int,
    *,
    max_cluster_tokens: int | None = None,
    candidates: int = 16,
    seed: int = 0,
) -> list[list[int]]:
    """Moves clusters under ``min_cluster_tokens`` into their nearest cluster with room.

    Small clusters are taken smallest first (ties by position); each goes to the
    first of its ``candidates`` nearest clusters (cosine similarity of centroids,
    found with :func:`synth.knn.knn_graph` and ``seed``, one cell probed per
    centroid: candidates need not be the exact nearest) whose token total stays
    within ``max_cluster_tokens`` (no cap when ``None``). Its documents are
    appended after the target's, so each merged part stays contiguous; a cluster
    that grew by absorbing others moves with them if it is still small when its
    turn comes, and a cluster absorbed earlier is represented by its absorber. A
    small cluster with no candidate that has room is kept as it is.

    Returns:
        The surviving clusters in their original relative order.
    """
    members = [list(c) for c in clusters if len(c)]
    if len(members) < 2:
        return members
    size = _token_sums(members, tokens)
    cap = np.inf if max_cluster_tokens is None else max_cluster_tokens
    small = sorted((s, i) for i, s in enumerate(size) if s < min_cluster_tokens)
    if not small:
        return members
    near = knn_graph(cluster_centroids(members, embeddings), k=candidates, seed=seed, probes=1)[0].tolist()
    owner = list(range(len(members)))

    def find(c: int) -> int:
        while owner[c] != c:
            owner[c] = c = owner[owner[c]]
        return c

    for _, source in small:
        if size[source] >= min_cluster_tokens or find(source) != source:
            continue
        target = next(
            (t for t in map(find, near[source]) if t >= 0 and t != source and size[t] + size[source] <= cap),
            None,
        )
        if target is None:
            continue
        members[target].extend(members[source])
        size[target] += size[source]
        owner[source] = target
    return [m for i, m in enumerate(members) if find(i) == i]


def order_cluster(cluster: Sequence[int], edges: Edges) -> list[int]:
    """Depth-first walk of the spanning forest restricted to ``cluster``.

    Only edges with both ends in the cluster count. Each tree is walked from an
    end of one of its longest paths (the document most edges away from the
    tree's first document in ``cluster``, ties to the lower index), visiting
    children nearest first, so consecutive documents are mostly tree neighbours.
    Trees are walked in the order their first documents appear in ``cluster``.

    Args:
        cluster: document indices.
        edges: forest edges; edges leaving the cluster are ignored.
    """
    inside = set(cluster)
    adjacency: dict[int, list[tuple[float, int]]] = {d: [] for d in cluster}
    for a, b, weight in edges.tolist() if isinstance(edges, np.ndarray) else edges:
        a, b = int(a), int(b)
        if a in inside and b in inside:
            adjacency[a].append((weight, b))
            adjacency[b].append((weight, a))
    for neighbours in adjacency.values():
        neighbours.sort()

    walk: list[int] = []
    seen: set[int] = set()
    for first in cluster:
        if first in seen:
            continue
        root = _far_end(first, adjacency)
        stack = [root]
        seen.add(root)
        while stack:
            node = stack.pop()
            walk.append(node)
            children = [c for _, c in adjacency[node] if c not in seen]
            seen.update(children)
            stack.extend(reversed(children))
    return walk


def _far_end(root: int, adjacency: dict[int, list[tuple[float, int]]]) -> int:
    """The lowest-index document among those most edges away from ``root``."""
    frontier, seen = [root], {root}
    while True:
        following = [c for node in frontier for _, c in adjacency[node] if c not in seen]
        if not following:
            return min(frontier)
        seen.update(following)
        frontier = following
