"""Packing similar documents into fixed-length training sequences.

The recipe for one partition of a corpus (In-Context Pretraining's idea, made
scalable by replacing its greedy walk with a minimum spanning forest):

1. kNN graph of the document embeddings (:func:`synth.knn.knn_graph`);
2. its minimum spanning forest (:func:`synth.mst.minimum_spanning_forest`);
3. single linkage along the forest with a token cap (:func:`synth.mst.cut_clusters`),
   then small clusters folded into the cluster of their nearest kNN neighbour with
   room (:func:`synth.mst.merge_small_clusters`);
4. clusters in a depth-first order of the forest between them, each walked depth
   first along its own tree (:func:`synth.mst.order_cluster`);
5. the walk packed into sequences (:func:`pack_ordered`): best fit over a window of
   the walk (no document shorter than a sequence is split) or, the In-Context
   Pretraining way, cut at sequence boundaries; a best-fit sequence is then put in
   the order that joins its most similar documents (:func:`order_sequence`);
6. the sequences shuffled.

A pipeline partitions a corpus (e.g. k-means on the embeddings), packs each
partition with :func:`pack_partition`, and completes the partitions' part-filled
last sequences from each other with :func:`complete_sequences`; nothing here needs
more than one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from synth.knn import knn_graph, normalized
from synth.mst import cluster_labels, cut_clusters, merge_small_clusters, minimum_spanning_forest, order_cluster

Piece = tuple[int, int, int]


def pack_ordered(
    items: Sequence[Piece], seq_len: int = 8192, sep_tokens: int = 1, *, cut: bool = False, window: int = 16
) -> list[list[Piece]]:
    """Packs ``(doc, start, end)`` items, in their order, into sequences of at most ``seq_len`` tokens.

    Best fit (the default): items go in order into the open sequence; when the
    next one does not fit the room left, the sequence is completed from the next
    ``window`` items not yet placed, each time with the one item or the two
    items that fill the room best (one when it fills as much; ties: the
    earliest), and the item that did not fit starts the next sequence. So a
    sequence holds a run of the order plus a few documents from just after it,
    and only the last sequence is left part-filled by lack of documents. An item
    longer than a sequence (``end - start + sep_tokens > seq_len``) is the only one
    ever split: full-sequence pieces from its start, each a sequence of its own,
    and its tail placed like any other item.

    Cut (``cut=True``, In-Context Pretraining's way): the items are concatenated in
    order and cut at sequence boundaries, so every sequence but the last is full
    (but for a document ending fewer than ``sep_tokens + 1`` tokens before the
    boundary, when no piece fits the room left) and any item may be split.

    Every item is followed by ``sep_tokens`` separator tokens; every token of
    every item lands in exactly one piece; a zero-token item keeps its piece.
    """
    if sep_tokens < 0 or seq_len <= sep_tokens:
        raise ValueError(f"need 0 <= sep_tokens < seq_len, got {sep_tokens} and {seq_len}")
    if window < 0:
        raise ValueError(f"window must not be negative, got {window}")
    items = [(doc, int(start), int(end)) for doc, start, end in items]
    if any(end < start or start < 0 for _, start, end in items):
        raise ValueError("an item needs 0 <= start <= end")
    return _cut(items, seq_len, sep_tokens) if cut else _best_fit(items, seq_len, sep_tokens, window)


def _cut(items: list[Piece], seq_len: int, sep_tokens: int) -> list[list[Piece]]:
    sequences: list[list[Piece]] = []
    current: list[Piece] = []
    room = seq_len
    for doc, start, end in items:
        while True:
            if room < sep_tokens or (room == sep_tokens and end > start):
                sequences.append(current)
                current, room = [], seq_len
            take = min(end - start, room - sep_tokens)
            current.append((doc, start, start + take))
            room -= take + sep_tokens
            start += take
            if start == end:
                break
    if current:
        sequences.append(current)
    return sequences


def _best_fit(items: list[Piece], seq_len: int, sep_tokens: int, window: int) -> list[list[Piece]]:
    piece_max = seq_len - sep_tokens
    sequences: list[list[Piece]] = []
    fitting: list[Piece] = []
    for doc, start, end in items:
        while end - start > piece_max:
            sequences.append([(doc, start, start + piece_max)])
            start += piece_max
        fitting.append((doc, start, end))
    need = [end - start + sep_tokens for _, start, end in fitting]
    placed = bytearray(len(fitting))
    current: list[Piece] = []
    room = seq_len
    for index, item in enumerate(fitting):
        if placed[index]:
            continue
        if need[index] > room:
            while found := _best_candidates(need, placed, index + 1, window, room):
                for position in found:
                    current.append(fitting[position])
                    placed[position] = 1
                    room -= need[position]
            sequences.append(current)
            current, room = [], seq_len
        current.append(item)
        placed[index] = 1
        room -= need[index]
    if current:
        sequences.append(current)
    return sequences


def _best_candidates(need: list[int], placed: bytearray, first: int, window: int, room: int) -> tuple[int, ...]:
    """Positions of the one or two items among the next ``window`` unplaced ones that fill ``room`` best.

    One item is taken when it fills as much as any two; ties go to the earliest.
    """
    ahead: list[int] = []
    position = first
    while len(ahead) < window and position < len(need):
        if not placed[position]:
            ahead.append(position)
        position += 1
    fits = [p for p in ahead if need[p] <= room]
    if not fits:
        return ()
    single = max(fits, key=lambda p: (need[p], -p))
    best, filled = (single,), need[single]
    for i, first in enumerate(fits):
        for second in fits[i + 1 :]:
            if filled < need[first] + need[second] <= room:
                best, filled = (first, second), need[first] + need[second]
                if filled == room:
                    return best
    return best


def order_sequence(sequence: list[Piece], embeddings: np.ndarray) -> list[Piece]:
    """The pieces in an order that joins similar documents (cheapest insertion).

    Pieces are inserted in their given order, each where it adds the most cosine
    similarity between neighbours, so a sequence cut from a walk keeps the walk's
    order and each document taken in from further along lands next to the one it
    resembles most. ``embeddings`` holds a unit-length row per ``doc`` key.
    """
    if len(sequence) < 3:
        return list(sequence)
    rows = embeddings[np.fromiter((doc for doc, _, _ in sequence), dtype=np.int64, count=len(sequence))]
    sims = (rows @ rows.T).tolist()
    path = [0]
    for new in range(1, len(sequence)):
        row = sims[new]
        best, gain = len(path), row[path[-1]]
        if row[path[0]] > gain:
            best, gain = 0, row[path[0]]
        for at in range(1, len(path)):
            left, right = path[at - 1], path[at]
            added = row[left] + row[right] - sims[left][right]
            if added > gain:
                best, gain = at, added
        path.insert(best, new)
    return [sequence[i] for i in path]


def neighbour_similarities(sequence: Sequence[Piece], embeddings: np.ndarray) -> list[float]:
    """Cosine similarity of each pair of consecutive pieces (unit-length ``embeddings`` rows by ``doc``)."""
    if len(sequence) < 2:
        return []
    rows = embeddings[np.fromiter((doc for doc, _, _ in sequence), dtype=np.int64, count=len(sequence))]
    return np.einsum("ij,ij->i", rows[:-1], rows[1:], dtype=np.float64).tolist()


def pack_partition(
    embeddings: np.ndarray,
    tokens: np.ndarray,
    *,
    k: int = 10,
    seq_len: int = 8192,
    max_cluster_tokens: int | None = None,
    min_cluster_tokens: int | None = None,
    sep_tokens: int = 1,
    cut: bool = False,
    window: int = 16,
    seed: int = 0,
) -> list[list[Piece]]:
    """Packs one partition along its walk (steps 1-5 of the recipe), unshuffled.

    Sequences follow the walk (best fit puts the full pieces of documents longer
    than a sequence first), so the last one is the part-filled one a pipeline
    completes from other partitions' (:func:`complete_sequences`).

    Args:
        embeddings: ``[n, d]`` document embeddings.
        tokens: ``[n]`` token counts.
        k: neighbours per document in the kNN graph.
        seq_len: tokens per sequence, separators included.
        max_cluster_tokens: cluster cap; defaults to ``4 * seq_len``.
        min_cluster_tokens: clusters below this are merged; defaults to ``seq_len // 2``.
        sep_tokens: separator tokens after each item.
        cut: cut the walk at sequence boundaries instead of best fit (see :func:`pack_ordered`).
        window: documents ahead in the walk a best-fit sequence is completed from.
        seed: seeds the kNN search.

    Returns:
        Sequences of ``(doc, start, end)`` items, see :func:`pack_ordered`.
    """
    unit = normalized(embeddings)
    order = order_corpus(
        unit,
        tokens,
        k=k,
        max_cluster_tokens=4 * seq_len if max_cluster_tokens is None else max_cluster_tokens,
        min_cluster_tokens=seq_len // 2 if min_cluster_tokens is None else min_cluster_tokens,
        seed=seed,
    )
    tokens = np.asarray(tokens, dtype=np.int64)
    sequences = pack_ordered(
        [(doc, 0, length) for doc, length in zip(order, tokens[np.asarray(order, dtype=np.int64)].tolist())],
        seq_len, sep_tokens, cut=cut, window=window,
    )
    if cut or not sequences:
        return sequences
    return [order_sequence(sequence, unit) for sequence in sequences]


def complete_sequences(
    pieces: Sequence[Piece],
    embeddings: np.ndarray,
    seq_len: int = 8192,
    sep_tokens: int = 1,
    *,
    cut: bool = False,
    window: int = 16,
) -> list[list[Piece]]:
    """Repacks the part-filled last sequences of several partitions, given as their pieces in order.

    ``doc`` of each piece indexes ``embeddings`` (one row per piece is simplest);
    the pieces are packed like a walk by :func:`pack_ordered`, so documents
    shorter than a sequence stay whole, and best-fit sequences are ordered by
    :func:`order_sequence`.
    """
    sequences = pack_ordered(pieces, seq_len, sep_tokens, cut=cut, window=window)
    if cut or not sequences:
        return sequences
    unit = normalized(embeddings)
    return [order_sequence(sequence, unit) for sequence in sequences]


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
    clusters = order_clusters(
        embeddings, tokens, max_cluster_tokens=max_cluster_tokens, min_cluster_tokens=min_cluster_tokens, k=k, seed=seed
    )
    return list(chain.from_iterable(clusters))


def order_clusters(
    embeddings: np.ndarray,
    tokens: np.ndarray,
    *,
    max_cluster_tokens: int,
    min_cluster_tokens: int,
    k: int = 10,
    seed: int = 0,
) -> list[list[int]]:
    """The clusters in a depth-first order of the forest between them, each as its own depth-first walk."""
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
        clusters, neighbours, distances, tokens, min_cluster_tokens, max_cluster_tokens=max_cluster_tokens
    )
    label = cluster_labels(clusters, n)
    ends = label[forest[:, :2].astype(np.int64)]
    within = ends[:, 0] == ends[:, 1]
    order = np.argsort(ends[within, 0], kind="stable")
    bounds = np.searchsorted(ends[within, 0][order], np.arange(len(clusters) + 1)).tolist()
    inner = forest[within][order].tolist()
    return [
        order_cluster(clusters[index], inner[bounds[index] : bounds[index + 1]])
        for index in _cluster_walk(len(clusters), ends[~within], forest[~within, 2])
    ]


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
