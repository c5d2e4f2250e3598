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


def _token_sums(clusters: Sequence[Sequence[int]], tokens: np.ndarray) -> list[int]:
    sizes = np.fromiter(map(len, clusters), dtype=np.int64, count=len(clusters))
    members = np.fromiter(chain.from_iterable(clusters), dtype=np.int64, count=int(sizes.sum()))
    sums = np.zeros(len(clusters), dtype=np.int64)
    np.add.at(sums, np.repeat(np.arange(len(clusters)), sizes), np.asarray(tokens, dtype=np.int64)[members])
    return sums.tolist()


def merge_small_clusters(
    clusters: Sequence[Sequence[int]],
    neighbours: np.ndarray,
    distances: np.ndarray,
    tokens: np.ndarray,
    min_cluster_tokens: int,
    *,
    max_cluster_tokens: int | None = None,
    hops: int = 3,
) -> list[list[int]]:
    """Moves clusters under ``min_cluster_tokens`` into the nearest cluster with room.

    Nearness is read off the kNN graph (``neighbours`` / ``distances`` as
    :func:`synth.knn.knn_graph` returns them): a small cluster's candidates are the
    clusters of its documents' neighbours, nearest edge first (ties by cluster
    position), which is single linkage again without the cap's refusal, so a
    merged document usually sits next to the neighbour it came for in the forest
    walk. Small clusters are taken smallest first (ties by position); each goes to
    its first candidate whose token total stays within ``max_cluster_tokens`` (no
    cap when ``None``). Its documents are appended after the target's, so each
    merged part stays contiguous; a cluster that grew by absorbing others moves
    with them if it is still small when its turn comes, and a cluster absorbed
    earlier is represented by its absorber. Clusters still small with no room
    among their neighbours' clusters try again with the clusters two edges away
    (then three, up to ``hops``), ranked by path length; one with no room within
    ``hops`` edges is kept as it is.

    The graph replaces a kNN search among cluster centroids that cost a fifth of
    a partition's packing at ten million documents and found candidates further
    away (adjacent similarity in sequences 0.484 against 0.487 now, on a partition
    of ``bench/bench_mst.py``'s corpus).

    Returns:
        The surviving clusters in their original relative order.
    """
    members = [list(c) for c in clusters if len(c)]
    if len(members) < 2:
        return members
    label = cluster_labels(members, len(neighbours))
    size = _token_sums(members, tokens)
    cap = np.inf if max_cluster_tokens is None else max_cluster_tokens
    small = [i for _, i in sorted((s, i) for i, s in enumerate(size) if s < min_cluster_tokens)]
    owner = list(range(len(members)))

    def find(c: int) -> int:
        while owner[c] != c:
            owner[c] = c = owner[owner[c]]
        return c

    # paths from the small clusters' documents, one edge longer each round
    reach = np.flatnonzero(np.isin(label, small))
    origin, length = label[reach], np.zeros(len(reach), dtype=np.float64)
    for _ in range(hops):
        waiting = [c for c in small if size[c] < min_cluster_tokens and find(c) == c]
        if not waiting:
            break
        still = np.isin(origin, waiting)
        origin, reach, length = _step(origin[still], reach[still], length[still], neighbours, distances)
        source, target = _ranked_targets(label, origin, reach, length)
        bounds = np.searchsorted(source, np.arange(len(members) + 1)).tolist()
        target = target.tolist()
        for cluster in waiting:
            if size[cluster] >= min_cluster_tokens or find(cluster) != cluster:
                continue
            into = next(
                (t for t in map(find, target[bounds[cluster] : bounds[cluster + 1]])
                 if t != cluster and size[t] + size[cluster] <= cap),
                None,
            )
            if into is None:
                continue
            members[into].extend(members[cluster])
            size[into] += size[cluster]
            owner[cluster] = into
    return [m for i, m in enumerate(members) if find(i) == i]


def cluster_labels(clusters: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Each document's cluster position; the clusters must hold the ``n`` documents of the graph."""
    count = sum(map(len, clusters))
    if count != n:
        raise ValueError(f"the clusters hold {count} documents, the kNN graph {n}")
    label = np.empty(n, dtype=np.int64)
    label[np.fromiter(chain.from_iterable(clusters), dtype=np.int64, count=n)] = np.repeat(
        np.arange(len(clusters)), [len(c) for c in clusters]
    )
    return label


def _step(
    origin: np.ndarray, reach: np.ndarray, length: np.ndarray, neighbours: np.ndarray, distances: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paths ``(origin cluster, document reached, length)`` extended by one kNN edge; a document
    reached twice from one cluster keeps its shortest path."""
    near = neighbours[reach]
    found = near >= 0
    origin = np.broadcast_to(origin[:, None], near.shape)[found]
    length = (length[:, None] + distances[reach])[found]
    reach = near[found]
    shortest = np.lexsort((length, reach, origin))
    first = np.ones(len(shortest), dtype=bool)
    first[1:] = (np.diff(origin[shortest]) != 0) | (np.diff(reach[shortest]) != 0)
    keep = shortest[first]
    return origin[keep], reach[keep], length[keep]


def _ranked_targets(
    label: np.ndarray, origin: np.ndarray, reach: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(source cluster, target cluster)`` of the paths that leave their cluster, sorted by
    source, then path length, then target."""
    target = label[reach]
    leaving = origin != target
    origin, target, length = origin[leaving], target[leaving], length[leaving]
    order = np.lexsort((target, length, origin))
    return origin[order], target[order]


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
