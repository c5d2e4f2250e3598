"""The greedy near-dedup rule: rounds of bucket votes, the in-order rest and the witnesses
give exactly the sequential rule, on random graphs and bucketings, for any number of rounds."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from curation.greedy_dedup import CLEAR, DROP, WAIT, bucket_votes, decide, kept_witnesses, resolve_in_order
from curation.minhash import SignatureSimilarity
from filters.image_dedup import PhashSimilarity


class GraphSimilarity:
    """Payloads are node numbers; similar when the adjacency matrix says so. Counts compared rows."""

    def __init__(self, adjacency: np.ndarray):
        self.adjacency = adjacency
        self.compared = 0

    def stack(self, payloads):
        return np.array(payloads, dtype=np.intp)

    def __call__(self, rows, payload):
        self.compared += len(rows)
        return self.adjacency[rows, payload]


def sequential(ids: list[str], similar) -> dict[str, str]:
    """The rule itself: each id -> the smallest kept id similar to it (itself when kept)."""
    keeper: dict[str, str] = {}
    for x in sorted(ids):
        keeper[x] = min((y for y in keeper if keeper[y] == y and similar(x, y)), default=x)
    return keeper


def settle(buckets: list[list[tuple[str, int]]], similarity, rounds: int) -> dict[str, str]:
    """What GreedyDedup computes, without Beam: each id in a bucket -> its kept id."""
    status: dict[str, bool] = {}
    open_buckets = buckets
    for _ in range(rounds):
        votes, still_open = defaultdict(list), []
        for bucket in open_buckets:
            cast = bucket_votes([(i, p, status.get(i)) for i, p in bucket], similarity)
            if cast:
                still_open.append(bucket)
            for member, vote in cast:
                votes[member].append(vote)
        for member, cast in votes.items():
            if (decided := decide(cast)) is not None:
                status[member] = decided
        open_buckets = still_open
    rest = resolve_in_order([[(i, p, status.get(i)) for i, p in bucket] for bucket in open_buckets], similarity)
    assert [member for member, _ in rest] == sorted(member for member, _ in rest)
    for member, kept in rest:
        assert member not in status
        status[member] = kept
    keeper = {member: member for bucket in buckets for member, _ in bucket if status[member]}
    for bucket in buckets:
        for member, witness in kept_witnesses([(i, p, status[i]) for i, p in bucket], similarity):
            keeper[member] = min(keeper.get(member, witness), witness)
    return keeper


def random_case(seed: int, nodes: int = 60) -> tuple[list[str], np.ndarray, list[list[tuple[str, int]]]]:
    """A random graph (chains, stars and cliques mixed in), ids in random order, and buckets
    that hold every edge at least once plus random non-edges."""
    rng = np.random.default_rng(seed)
    adjacency = np.zeros((nodes, nodes), dtype=bool)
    for _ in range(nodes // 2):  # short chains
        start = int(rng.integers(nodes - 6))
        for a in range(start, start + int(rng.integers(2, 6))):
            adjacency[a, a + 1] = True
    for _ in range(4):  # stars and cliques
        group = rng.choice(nodes, size=int(rng.integers(3, 7)), replace=False)
        pairs = itertools.combinations(group, 2) if rng.random() < 0.5 else ((group[0], g) for g in group[1:])
        for a, b in pairs:
            adjacency[a, b] = True
    adjacency |= adjacency.T
    np.fill_diagonal(adjacency, True)
    ids = [f"{int(v):08x}" for v in rng.choice(2**32, size=nodes, replace=False)]
    buckets = [[(ids[a], a), (ids[b], b)] for a, b in zip(*np.nonzero(np.triu(adjacency, 1)))]
    for _ in range(nodes // 3):  # bigger buckets: LSH candidates, similar or not
        members = rng.choice(nodes, size=int(rng.integers(2, 8)), replace=False)
        buckets.append([(ids[m], int(m)) for m in members])
    for bucket in rng.choice(len(buckets), size=len(buckets) // 4):  # repeated members count once
        buckets[bucket] = buckets[bucket] + buckets[bucket][:1]
    return ids, adjacency, buckets


@pytest.mark.parametrize("seed", range(12))
def test_rounds_and_rest_give_the_sequential_rule(seed):
    ids, adjacency, buckets = random_case(seed)
    node = {doc_id: i for i, doc_id in enumerate(ids)}
    expected = sequential([i for i in ids if any(i == m for b in buckets for m, _ in b)],
                          lambda x, y: adjacency[node[x], node[y]])
    for rounds in (0, 1, 2, 3, 50):
        assert settle(buckets, GraphSimilarity(adjacency), rounds) == expected, rounds
    kept = {x for x, k in expected.items() if x == k}
    for x, k in expected.items():
        assert k in kept and adjacency[node[x], node[k]]  # every drop names a kept near duplicate
    for x, y in itertools.combinations(sorted(kept), 2):
        assert not adjacency[node[x], node[y]]  # no two kept records are near duplicates


def test_a_chain_keeps_its_ends_and_alternates():
    adjacency = np.eye(5, dtype=bool)
    for a in range(4):
        adjacency[a, a + 1] = adjacency[a + 1, a] = True
    ids = ["a", "b", "c", "d", "e"]
    buckets = [[(ids[a], a), (ids[a + 1], a + 1)] for a in range(4)]
    assert settle(buckets, GraphSimilarity(adjacency), 0) == {"a": "a", "b": "a", "c": "c", "d": "c", "e": "e"}
    members = [(i, n, None) for n, i in enumerate(ids)]
    assert bucket_votes(members, GraphSimilarity(adjacency)) == [("a", CLEAR)] + [(i, WAIT) for i in "bcde"]
    members = [("a", 0, True), ("b", 1, None), ("c", 2, None)]
    assert bucket_votes(members, GraphSimilarity(adjacency)) == [("b", DROP), ("c", WAIT)]
    members = [("a", 0, True), ("b", 1, False), ("c", 2, None)]  # dropped members are ignored
    assert bucket_votes(members, GraphSimilarity(adjacency)) == [("c", CLEAR)]
    assert decide([CLEAR, WAIT, DROP]) is False and decide([CLEAR, WAIT]) is None and decide([CLEAR]) is True


def test_a_bucket_of_many_copies_costs_a_few_comparisons_per_member():
    n = 20_000
    similarity = GraphSimilarity(np.ones((n, n), dtype=bool))
    members = [(f"{i:06d}", i, None) for i in range(n)]
    votes = bucket_votes(members, similarity)
    assert votes[0] == ("000000", CLEAR) and all(vote == WAIT for _, vote in votes[1:])
    assert similarity.compared <= 20 * n
    similarity.compared = 0
    members = [(member, p, member == "000000") for member, p, _ in members]
    assert all(vote == DROP for _, vote in bucket_votes(members, similarity))
    assert similarity.compared <= 2 * n


def test_similarities_verify_signatures_and_phashes():
    sig = np.arange(100, dtype=np.uint32)
    near, far = sig.copy(), sig.copy()
    near[:30] += 1  # 70% agree: inclusive
    far[:31] += 1
    rows = SignatureSimilarity(0.7).stack([sig, near, far])
    assert SignatureSimilarity(0.7)(rows, sig).tolist() == [True, True, False]
    phash = PhashSimilarity(4)
    rows = phash.stack(["ffffffffffffffff", "fffffffffffffff0", "ffffffffffffff00", "0000000000000000"])
    assert phash(rows, rows[0]).tolist() == [True, True, False, False]
