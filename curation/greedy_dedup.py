"""The near-duplicate rule of every near-dedup step, as pure functions over LSH buckets.

**The rule.** Visit the records in increasing id order (string order); a record is *kept*
unless it is a near duplicate of a record already kept. A dropped record names the smallest
kept record it is a near duplicate of. "Near duplicate" is a verified pair: the two records
share an LSH bucket and pass the exact check (MinHash signatures agreeing in at least
``threshold`` of their positions, pHashes within ``max_distance`` bits). In graph terms the kept
records are the lexicographically first maximal independent set of the similarity graph.

What follows from it:

* every reject names a record that was kept, and that record is itself a verified near
  duplicate of the reject (never a near duplicate of a near duplicate);
* no two kept records are near duplicates (up to the pairs LSH never puts in one bucket);
* in a chain ``a ~ b ~ c`` (``a`` and ``c`` not similar), ``b`` is dropped for ``a`` and ``c``
  stays: its only near duplicate was itself dropped, so nothing kept resembles it;
* the outcome depends only on the ids and the verified pairs: not on input order, sharding,
  bundle sizes or the runner.

**Why not connected components.** Keeping one record per connected component of the similarity
graph drops records that resemble nothing kept: at web scale chains of edits (templates,
boilerplate, revisions) join components of millions of records whose ends share no sentence,
and one record would stand for all of them. Components also need an unbounded number of
passes. The greedy rule drops a record only for a kept record it resembles.

**Computing it in parallel** (:func:`bucket_votes`, :func:`decide`): rounds over the buckets
that hold two or more records. In a round every bucket looks at each undecided member ``x``
and votes *drop* when a kept member with a smaller id is a near duplicate of ``x``, *wait* when
only undecided smaller members are, and *clear* when no smaller member that is not dropped is
(dropped members are ignored). Over all of ``x``'s buckets: any *drop* drops it, *clear*
everywhere keeps it, anything else leaves it undecided. Each decision is the rule's, by
induction on the ids. A clique or a star with the smallest id in the middle is settled in two
rounds; a chain settles one link per round. Ids are content hashes, so their order is random
with respect to the graph, and the rounds the parallel greedy needs grow like the logarithm of
the component size (Blelloch, Fineman and Shun 2012; Fischer and Noever 2018). After a fixed
number of rounds the few buckets still open are settled on one worker in id order
(:func:`resolve_in_order`), so the result is the rule's exactly whatever the number of rounds.
Last, every dropped record is given the smallest kept near duplicate over its buckets
(:func:`kept_witnesses`).

A bucket is a list of ``(id, payload)`` or ``(id, payload, status)``; ``status`` is
``True`` (kept), ``False`` (dropped) or ``None`` (undecided). A *similarity* compares payloads:
``similarity.stack(payloads)`` makes an array of rows and ``similarity(rows, payload)`` says per
row whether it is a near duplicate of ``payload`` (:class:`curation.minhash.SignatureSimilarity`,
:class:`filters.image_dedup.PhashSimilarity`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

DROP, WAIT, CLEAR = 0, 1, 2  # a bucket's vote on one undecided member; the smallest vote wins
_FIRST_CHUNK, _MAX_CHUNK = 16, 4096


class Similarity(Protocol):
    def stack(self, payloads: Sequence[Any]) -> np.ndarray: ...

    def __call__(self, rows: np.ndarray, payload: Any) -> np.ndarray: ...


def _bucket(members: Iterable[tuple], similarity: Similarity) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, payload rows, statuses)`` in id order, one entry per id. Ids are content hashes:
    the members of a repeated id carry the same payload and status, so any one stands for all."""
    by_id: dict[str, tuple] = {}
    for member in members:
        by_id.setdefault(member[0], member)
    ids = sorted(by_id)
    rows = similarity.stack([by_id[i][1] for i in ids]) if ids else np.empty(0)
    status = np.array([by_id[i][2] if len(by_id[i]) > 2 else None for i in ids], dtype=object)
    return ids, rows, status


def _first_similar(rows: np.ndarray, candidates: np.ndarray, payload: Any, similarity: Similarity) -> int:
    """Position in ``candidates`` (row indices) of the first row similar to ``payload``, or -1.

    Scans in chunks that grow fourfold, so a member of a big bucket of copies costs a few
    comparisons, not one per member."""
    start, size = 0, _FIRST_CHUNK
    while start < len(candidates):
        hits = np.flatnonzero(similarity(rows[candidates[start : start + size]], payload))
        if hits.size:
            return start + int(hits[0])
        start += size
        size = min(size * 4, _MAX_CHUNK)
    return -1


def _positions(status: np.ndarray, value: bool | None) -> np.ndarray:
    return np.flatnonzero([s is value for s in status])


def bucket_votes(members: Iterable[tuple[str, Any, bool | None]], similarity: Similarity) -> list[tuple[str, int]]:
    """One round in one bucket: ``(id, vote)`` for every undecided member.

    The vote is :data:`DROP` when a kept member with a smaller id is a near duplicate of it,
    else :data:`WAIT` when an undecided member with a smaller id is, else :data:`CLEAR`."""
    ids, rows, status = _bucket(members, similarity)
    kept, undecided = _positions(status, True), _positions(status, None)
    votes = []
    for i in undecided:
        before_kept = kept[: np.searchsorted(kept, i)]
        before_undecided = undecided[: np.searchsorted(undecided, i)]
        if _first_similar(rows, before_kept, rows[i], similarity) >= 0:
            votes.append((ids[i], DROP))
        elif _first_similar(rows, before_undecided, rows[i], similarity) >= 0:
            votes.append((ids[i], WAIT))
        else:
            votes.append((ids[i], CLEAR))
    return votes


def decide(votes: Iterable[int]) -> bool | None:
    """A member's status from its buckets' votes: dropped, kept, or still undecided (None)."""
    least = min(votes, default=CLEAR)
    return {DROP: False, WAIT: None, CLEAR: True}[least]


def resolve_in_order(
    buckets: Iterable[Iterable[tuple[str, Any, bool | None]]], similarity: Similarity
) -> list[tuple[str, bool]]:
    """Settles every undecided member of ``buckets`` by the rule, visiting them in id order.

    ``buckets`` must hold every bucket of every undecided member. Returns ``(id, kept)`` for
    the members that were undecided, in id order."""
    status: dict[str, bool] = {}
    prepared = []
    places: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for index, members in enumerate(buckets):
        ids, rows, statuses = _bucket(members, similarity)
        prepared.append((ids, rows))
        for position, (member, known) in enumerate(zip(ids, statuses)):
            places[member].append((index, position))
            if known is not None:
                status[member] = known
    settled = []
    for member in sorted(m for m in places if m not in status):
        kept = True
        for index, position in places[member]:
            ids, rows = prepared[index]
            smaller_kept = np.array([j for j in range(position) if status[ids[j]]], dtype=np.intp)
            if _first_similar(rows, smaller_kept, rows[position], similarity) >= 0:
                kept = False
                break
        status[member] = kept
        settled.append((member, kept))
    return settled


def kept_witnesses(members: Iterable[tuple[str, Any, bool]], similarity: Similarity) -> list[tuple[str, str]]:
    """``(dropped id, smallest kept id in this bucket that is a near duplicate of it)``.

    Members are all decided. The smallest over a record's buckets is the id its reject names."""
    ids, rows, status = _bucket(members, similarity)
    kept, dropped = _positions(status, True), _positions(status, False)
    found = []
    for i in dropped:
        before_kept = kept[: np.searchsorted(kept, i)]
        first = _first_similar(rows, before_kept, rows[i], similarity)
        if first >= 0:
            found.append((ids[i], ids[before_kept[first]]))
    return found
