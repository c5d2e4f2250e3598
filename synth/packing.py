"""Packing similar documents into fixed-length training sequences.

The recipe for one partition of a corpus (In-Context Pretraining's idea, made
scalable by replacing its greedy walk with a minimum spanning forest):

1. kNN graph of the document embeddings (:func:`synth.knn.knn_graph`);
2. its minimum spanning forest (:func:`synth.mst.minimum_spanning_forest`);
3. single linkage along the forest with a token cap (:func:`synth.mst.cut_clusters`),
   then small clusters folded into their nearest one (:func:`synth.mst.merge_small_clusters`);
4. clusters in a depth-first order of the forest between them, each walked depth
   first along its own tree (:func:`synth.mst.order_cluster`);
5. the walk cut into sequences (:func:`pack_sequences`), which are then shuffled.

A pipeline partitions a corpus (e.g. k-means on the embeddings) and calls
:func:`pack_corpus` once per partition; nothing here needs more than one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from synth.knn import knn_graph, normalized
from synth.mst import cut_clusters, merge_small_clusters, minimum_spanning_forest, order_cluster

Piece = tuple[int, int, int]


def pack_sequences(
    ordered_docs: Sequence[int], tokens: np.ndarray, seq_len: int = 8192, sep_tokens: int = 1
) -> list[list[Piece]]:
    """Cuts an ordered list of documents into sequences of at most ``seq_len`` tokens.

    Each item is ``(doc, start, end)``: tokens ``[start, end)`` of ``doc``, followed
    in the sequence by ``sep_tokens`` separator tokens, so a sequence holds
    ``sum(end - start + sep_tokens)`` tokens. Policy: documents go in order; a
    document that does not fit the room left starts the next sequence (the rest
    of the current one is padding). A document longer than a sequence
    (``tokens + sep_tokens > seq_len``) starts a new sequence and is cut into
    full-sequence pieces from its start; its last piece is then treated like a
    short document, so following documents can fill that sequence. Every token
    of every document lands in exactly one item, and a zero-token document still
    gets an item ``(doc, 0, 0)``.
    """
    if sep_tokens < 0 or seq_len <= sep_tokens:
        raise ValueError(f"need 0 <= sep_tokens < seq_len, got {sep_tokens} and {seq_len}")
    tokens = np.asarray(tokens, dtype=np.int64)
    if (tokens < 0).any():
        raise ValueError("token counts must not be negative")
    piece_max = seq_len - sep_tokens
    sequences: list[list[Piece]] = []
    current: list[Piece] = []
    used = 0
    for doc, length in zip(ordered_docs, tokens[np.asarray(ordered_docs, dtype=np.int64)].tolist()):
        doc = int(doc)
        start = 0
        if length > piece_max:
            if current:
                sequences.append(current)
                current, used = [], 0
            while length - start > piece_max:
                sequences.append([(doc, start, start + piece_max)])
                start += piece_max
        if used + length - start + sep_tokens > seq_len:
            sequences.append(current)
            current, used = [], 0
        current.append((doc, start, length))
        used += length - start + sep_tokens
    if current:
        sequences.append(current)
    return sequences


def shuffle_sequences(sequences: Sequence[list[Piece]], seed: int) -> list[list[Piece]]:
    """The sequences in a random order drawn from ``seed``."""
    order = np.random.default_rng(seed).permutation(len(sequences))
    return [sequences[i] for i in order.tolist()]


def order_corpus(
    embeddings: np.ndarray,
    tokens: np.ndarray,
    *,
    max_cluster_tokens: int,
    min_cluster_tokens: int,
    k: int = 10,
    seed: int = 0,
) -> list[int]:
    """Every document once, similar documents next to each other (steps 1-4 of the recipe)."""
    n = len(embeddings)
    tokens = np.asarray(tokens, dtype=np.int64)
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} token counts for {n} documents")
    if n == 0:
        return []
    neighbours, distances = knn_graph(embeddings, k=k, seed=seed)
    forest = np.asarray(minimum_spanning_forest(n, neighbours, distances), dtype=np.float64).reshape(-1, 3)
    clusters = cut_clusters(n, forest, tokens, max_cluster_tokens)
    clusters = merge_small_clusters(
        clusters, embeddings, tokens, min_cluster_tokens, max_cluster_tokens=max_cluster_tokens, seed=seed
    )
    label = np.empty(n, dtype=np.int64)
    label[np.fromiter(chain.from_iterable(clusters), dtype=np.int64, count=n)] = np.repeat(
        np.arange(len(clusters)), [len(c) for c in clusters]
    )
    ends = label[forest[:, :2].astype(np.int64)]
    within = ends[:, 0] == ends[:, 1]
    order = np.argsort(ends[within, 0], kind="stable")
    bounds = np.searchsorted(ends[within, 0][order], np.arange(len(clusters) + 1)).tolist()
    inner = forest[within][order].tolist()
    walk: list[int] = []
    for index in _cluster_walk(len(clusters), ends[~within], forest[~within, 2]):
        walk.extend(order_cluster(clusters[index], inner[bounds[index] : bounds[index + 1]]))
    return walk


def _cluster_walk(count: int, ends: np.ndarray, weights: np.ndarray) -> list[int]:
    """Depth-first order of clusters over the forest edges between them (lightest first)."""
    adjacency: list[list[tuple[float, int]]] = [[] for _ in range(count)]
    for (a, b), weight in zip(ends.tolist(), weights.tolist()):
        adjacency[a].append((weight, b))
        adjacency[b].append((weight, a))
    seen = [False] * count
    walk: list[int] = []
    for root in range(count):
        stack = [root]
        while stack:
            node = stack.pop()
            if seen[node]:
                continue
            seen[node] = True
            walk.append(node)
            stack.extend(c for _, c in sorted(adjacency[node], reverse=True) if not seen[c])
    return walk


def pack_corpus(
    embeddings: np.ndarray,
    tokens: np.ndarray,
    *,
    k: int = 10,
    seq_len: int = 8192,
    max_cluster_tokens: int | None = None,
    min_cluster_tokens: int | None = None,
    sep_tokens: int = 1,
    seed: int = 0,
) -> list[list[Piece]]:
    """Packs one partition: similar documents share sequences, sequences are shuffled.

    Args:
        embeddings: ``[n, d]`` document embeddings.
        tokens: ``[n]`` token counts.
        k: neighbours per document in the kNN graph.
        seq_len: tokens per sequence, separators included.
        max_cluster_tokens: cluster cap; defaults to ``4 * seq_len``.
        min_cluster_tokens: clusters below this are merged; defaults to ``seq_len // 2``.
        sep_tokens: separator tokens after each item.
        seed: seeds the kNN search and the shuffle.

    Returns:
        Sequences of ``(doc, start, end)`` items, see :func:`pack_sequences`.
    """
    order = order_corpus(
        embeddings,
        tokens,
        k=k,
        max_cluster_tokens=4 * seq_len if max_cluster_tokens is None else max_cluster_tokens,
        min_cluster_tokens=seq_len // 2 if min_cluster_tokens is None else min_cluster_tokens,
        seed=seed,
    )
    return shuffle_sequences(pack_sequences(order, tokens, seq_len, sep_tokens), seed)


def greedy_walk_order(embeddings: np.ndarray, seed: int = 0, k: int = 10) -> list[int]:
    """In-Context Pretraining's document order, the baseline for :func:`order_corpus`.

    Starts from a random document and keeps moving to the most similar unvisited
    one among its ``k`` nearest neighbours; when all of those are visited, jumps
    to a random unvisited document (what the paper does at scale).
    """
    n = len(embeddings)
    neighbours = knn_graph(embeddings, k=k, seed=seed)[0].tolist()
    random_docs = np.random.default_rng(seed).permutation(n).tolist()
    visited = [False] * n
    walk: list[int] = []
    cursor = 0
    while len(walk) < n:
        while visited[random_docs[cursor]]:
            cursor += 1
        doc = random_docs[cursor]
        while doc >= 0:
            visited[doc] = True
            walk.append(doc)
            doc = next((d for d in neighbours[doc] if d >= 0 and not visited[d]), -1)
    return walk


def adjacent_similarity(order: Sequence[int], embeddings: np.ndarray, block: int = 65_536) -> float:
    """Mean cosine similarity of consecutive documents in ``order`` (0 for fewer than two)."""
    order = np.asarray(order, dtype=np.int64)
    if len(order) < 2:
        return 0.0
    total = 0.0
    for start in range(0, len(order) - 1, block):
        stop = min(start + block, len(order) - 1)
        left = normalized(embeddings[order[start:stop]])
        right = normalized(embeddings[order[start + 1 : stop + 1]])
        total += float(np.einsum("ij,ij->", left, right, dtype=np.float64))
    return total / (len(order) - 1)
