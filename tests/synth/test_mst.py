import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.sparse import csr_matrix

from synth.knn import knn_graph
from synth.mst import cut_clusters, merge_small_clusters, minimum_spanning_forest, order_cluster


def topics(n, clusters=20, dim=384, spread=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    label = rng.integers(0, clusters, n)
    x = centers[label] / np.sqrt(dim) + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), label


def components(n, edges):
    u = [a for a, _, _ in edges]
    v = [b for _, b, _ in edges]
    return connected_components(csr_matrix((np.ones(len(u)), (u, v)), shape=(n, n)), directed=False)


def prim_weight(x):
    """Total weight of the exact minimum spanning tree of the complete cosine-distance graph."""
    dist = 1 - x @ x.T
    n = len(x)
    inside = np.zeros(n, dtype=bool)
    best = np.full(n, np.inf)
    best[0] = 0
    total = 0.0
    for _ in range(n):
        node = int(np.argmin(np.where(inside, np.inf, best)))
        total += best[node]
        inside[node] = True
        best = np.minimum(best, dist[node])
    return total


def test_forest_of_complete_knn_graph_is_the_minimum_spanning_tree():
    x, _ = topics(120, dim=16)
    neighbours, distances = knn_graph(x, k=119)
    edges = minimum_spanning_forest(120, neighbours, distances)
    assert len(edges) == 119
    assert components(120, edges)[0] == 1
    assert sum(w for _, _, w in edges) == pytest.approx(prim_weight(x), abs=1e-4)
    assert all(i < j for i, j, _ in edges)
    assert edges == sorted(edges, key=lambda e: (e[2], e[0], e[1]))


def test_both_directions_of_an_edge_count_once_and_padding_is_skipped():
    neighbours = np.array([[1, -1], [0, 2], [1, 0]])
    distances = np.array([[0.5, np.inf], [0.4, 0.1], [0.1, 0.9]])
    assert minimum_spanning_forest(3, neighbours, distances) == [(1, 2, 0.1), (0, 1, 0.4)]


def test_zero_distances_from_duplicate_documents_are_kept():
    x = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)
    neighbours, distances = knn_graph(x, k=2)
    edges = minimum_spanning_forest(6, neighbours, distances)
    assert sorted((i, j) for i, j, w in edges if w == 0) == [(0, 1), (2, 3), (4, 5)]
    assert len(edges) == 5


def test_disconnected_knn_graph_gives_one_tree_per_component():
    x, label = topics(400, clusters=4, spread=0.05)
    neighbours, distances = knn_graph(x, k=3)
    edges = minimum_spanning_forest(400, neighbours, distances)
    count, parts = components(400, edges)
    assert count >= 4
    assert len(edges) == 400 - count
    for part in range(count):
        assert len(set(label[parts == part].tolist())) == 1


def forest(x, k=10):
    return minimum_spanning_forest(len(x), *knn_graph(x, k=k))


def test_cut_clusters_respect_the_cap_and_are_subtrees():
    x, _ = topics(1000)
    edges = forest(x)
    tokens = np.random.default_rng(0).integers(1, 400, 1000)
    tokens[7] = 5000  # longer than the cap: alone in its cluster
    clusters = cut_clusters(1000, edges, tokens, 2000)
    assert sorted(d for c in clusters for d in c) == list(range(1000))
    assert [7] in clusters
    for cluster in clusters:
        assert cluster == sorted(cluster)
        if cluster != [7]:
            assert tokens[cluster].sum() <= 2000
        inside = set(cluster)
        inner = [(i, j, w) for i, j, w in edges if i in inside and j in inside]
        assert len(inner) == len(cluster) - 1  # connected subtree of the forest
    assert [c[0] for c in clusters] == sorted(c[0] for c in clusters)
    assert cut_clusters(1000, np.array(edges), tokens, 2000) == clusters


def test_cut_clusters_follow_lightest_edges_first():
    edges = [(0, 1, 0.3), (1, 2, 0.1), (2, 3, 0.2)]
    assert cut_clusters(4, edges, np.ones(4), 2) == [[0], [1, 2], [3]]
    assert cut_clusters(4, edges, np.ones(4), 3) == [[0], [1, 2, 3]]
    assert cut_clusters(4, edges, np.ones(4), 4) == [[0, 1, 2, 3]]
    assert cut_clusters(5, [], np.ones(5), 10) == [[0], [1], [2], [3], [4]]


def test_order_cluster_walks_a_path_end_to_end():
    edges = [(3, 4, 0.1), (0, 1, 0.2), (2, 3, 0.3), (1, 2, 0.4), (4, 9, 0.1)]
    assert order_cluster([2, 0, 4, 1, 3], edges) == [0, 1, 2, 3, 4]


def test_order_cluster_depth_first_nearest_child_first():
    # star around 0 with a chain 0-2-5: the walk starts at 5, farthest from 0
    edges = [(0, 1, 0.3), (0, 2, 0.1), (2, 5, 0.2), (0, 3, 0.2)]
    assert order_cluster([0, 1, 2, 3, 5], edges) == [5, 2, 0, 3, 1]
    assert order_cluster([2, 1, 0, 3, 5], edges) == [1, 0, 2, 5, 3]


def test_order_cluster_walks_each_tree_in_order_of_appearance():
    edges = [(0, 1, 0.1), (5, 6, 0.1), (6, 7, 0.2)]
    assert order_cluster([7, 5, 6, 1, 0], edges) == [5, 6, 7, 0, 1]
    assert order_cluster([4], edges) == [4]


def test_order_cluster_keeps_tree_neighbours_adjacent():
    x, _ = topics(600)
    edges = forest(x)
    cluster = max(cut_clusters(600, edges, np.ones(600), 200), key=len)
    walk = order_cluster(cluster, edges)
    assert sorted(walk) == cluster
    tree = {(i, j) for i, j, _ in edges} | {(j, i) for i, j, _ in edges}
    adjacent = np.mean([(a, b) in tree for a, b in zip(walk, walk[1:])])
    assert adjacent > 0.3  # a random order would give about 2 / len(cluster)


def test_merge_small_clusters_joins_nearest_cluster_with_room():
    x = np.array([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.1], [0.9, 0.2, 0], [0, 0.9, 0.3]], dtype=np.float32)
    graph = knn_graph(x, k=5)
    clusters = [[0, 1], [2, 3], [4], [5]]
    tokens = np.array([10, 10, 10, 10, 3, 4])
    merged = merge_small_clusters(clusters, *graph, tokens, 5)
    assert merged == [[0, 1, 4], [2, 3, 5]]
    # [4] fills [0, 1] up to the cap, then [5] finds no room anywhere
    assert merge_small_clusters(clusters, *graph, tokens, 5, max_cluster_tokens=23) == [[0, 1, 4], [2, 3], [5]]
    # no big cluster has room for [4]: it joins the small [5] instead
    assert merge_small_clusters(clusters, *graph, tokens, 5, max_cluster_tokens=22) == [[0, 1], [2, 3], [5, 4]]


def test_merged_small_cluster_carries_what_it_absorbed():
    x = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    # [1] is smallest and nearest to [2]; [2, 1] is still small and then joins [0]
    assert merge_small_clusters([[0], [1], [2]], *knn_graph(x, k=2), np.array([10, 1, 2]), 5) == [[0, 2, 1]]


def test_small_cluster_only_joins_clusters_its_neighbours_are_in():
    x = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], dtype=np.float32)
    # one neighbour each: [0] and [1] are each other's, [2] and [3] too; [0] goes first (smallest,
    # then lowest position) into [1], which stays small with no neighbour outside itself
    graph = knn_graph(x, k=1)
    merged = merge_small_clusters([[0], [1], [2], [3]], *graph, np.array([1, 1, 1, 1]), 3)
    assert merged == [[1, 0], [3, 2]]
    with pytest.raises(ValueError, match="3 documents, the kNN graph 4"):
        merge_small_clusters([[0], [1, 2]], *graph, np.array([1, 1, 1, 1]), 3)


def test_merge_small_clusters_on_topics_keeps_docs_and_cap():
    x, label = topics(1500)
    graph = knn_graph(x, k=10)
    edges = minimum_spanning_forest(len(x), *graph)
    tokens = np.random.default_rng(1).integers(50, 600, 1500)
    clusters = cut_clusters(1500, edges, tokens, 4000)
    merged = merge_small_clusters(clusters, *graph, tokens, 1000, max_cluster_tokens=4000)
    assert sorted(d for c in merged for d in c) == list(range(1500))
    assert all(tokens[c].sum() <= 4000 for c in merged)
    small_before = sum(tokens[c].sum() < 1000 for c in clusters)
    small_after = sum(tokens[c].sum() < 1000 for c in merged)
    assert small_after < small_before / 4
    purity = np.mean([np.bincount(label[c]).max() / len(c) for c in merged])
    assert purity > 0.8
    assert merge_small_clusters(clusters, *graph, tokens, 1000, max_cluster_tokens=4000) == merged


def test_order_clusters_gives_capped_subtrees_walked_in_the_order_packing_uses():
    from synth.packing import order_clusters, order_corpus

    x, _ = topics(1500)
    tokens = np.random.default_rng(1).integers(20, 700, 1500)
    settings = dict(max_cluster_tokens=4096, min_cluster_tokens=1024)
    clusters = order_clusters(x, tokens, **settings)
    assert sorted(d for cluster in clusters for d in cluster) == list(range(1500))
    assert [d for cluster in clusters for d in cluster] == order_corpus(x, tokens, **settings)
    assert all(tokens[cluster].sum() <= 4096 for cluster in clusters)
    assert sum(tokens[cluster].sum() < 1024 for cluster in clusters) <= 0.05 * len(clusters)  # no room nearby
    inside = [float(x[a] @ x[b]) for cluster in clusters for a, b in zip(cluster, cluster[1:])]
    between = [float(x[a[-1]] @ x[b[0]]) for a, b in zip(clusters, clusters[1:])]
    shuffled = np.random.default_rng(0).permutation(1500)
    unordered = [float(x[a] @ x[b]) for a, b in zip(shuffled, shuffled[1:])]
    # documents are nearer inside a cluster than across a cluster boundary, and the walk puts
    # near clusters next to each other: boundaries are far nearer than documents in no order
    assert np.mean(inside) > np.mean(between) > np.mean(unordered) + 0.3
