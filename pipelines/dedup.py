"""Near-duplicate removal shared by the text, interleaved and document pipelines.

:class:`NearDedup` drops near-duplicate documents (MinHash LSH, :mod:`curation.minhash`);
:class:`GreedyDedup` under it, also used for perceptual image copies, applies the rule of
:mod:`curation.greedy_dedup`: in id order, a record is kept unless it is a verified near
duplicate of a record already kept, and a dropped record names the smallest kept record it
is a near duplicate of. So every reject names a kept record, and in a chain ``a ~ b ~ c``
(``a`` and ``c`` not similar) ``b`` goes and ``c`` stays. The outcome depends only on the
ids and the verified pairs, never on the runner, the sharding or the input order.

How it runs: band keys group the records into buckets; buckets of one record are done
(the record is kept unless another bucket says otherwise). ``rounds`` rounds of votes settle
most records in parallel (each round: vote in every open bucket, join the votes per record,
decide, regroup the open buckets); the buckets still open after them, few because ids are
content hashes in random order, are settled together on one worker in id order; a last pass
gives every dropped record the smallest kept near duplicate it shares a bucket with.
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from curation.greedy_dedup import Similarity, bucket_votes, decide, kept_witnesses, resolve_in_order
from curation.minhash import MinHashSettings, SignatureSimilarity, band_keys, signature
from curation.records import reject
from pipelines.transforms import METRICS_NAMESPACE, REJECTS

ROUNDS = 4  # cliques and stars take 2; chains one link each; what is left goes to one worker
_VOTES = "votes"
_DECIDED = "decided"


def _candidate_bucket(item: tuple[Any, Iterable[tuple[str, Any]]]) -> Iterable[tuple[Any, list[tuple[str, Any, None]]]]:
    key, members = item
    unique = {}
    for member_id, payload in members:
        unique.setdefault(member_id, payload)  # a repeated id (a content hash) has one payload
    if len(unique) > 1:
        yield key, [(member_id, payload, None) for member_id, payload in unique.items()]


def _vote(item: tuple[Any, Iterable[tuple[str, Any, Any]]], similarity: Similarity) -> Iterable[Any]:
    """An open bucket's votes, and its members again (keyed by id) for the next round."""
    key, members = item
    members = list(members)
    votes = bucket_votes(members, similarity)
    for member_id, vote in votes:
        yield TaggedOutput(_VOTES, (member_id, vote))
    if votes:  # else every member is decided: the bucket is closed
        for member_id, payload, status in members:
            yield member_id, (key, payload, status)


def _decide(item: tuple[str, dict[str, list]]) -> Iterable[Any]:
    """A record's votes of this round -> its status, sent back to each of its open buckets."""
    member_id, joined = item
    memberships = joined["member"]
    status = memberships[0][2] if memberships else None
    if status is None and joined["vote"]:
        status = decide(joined["vote"])
        if status is not None:
            yield TaggedOutput(_DECIDED, (member_id, status))
    for key, payload, _ in memberships:
        yield key, (member_id, payload, status)


def _resolve_rest(item: tuple[None, Iterable[list]], similarity: Similarity) -> list[tuple[str, bool]]:
    settled = resolve_in_order(item[1], similarity)
    Metrics.counter(METRICS_NAMESPACE, "near_dedup.settled_after_rounds").inc(len(settled))
    return settled


def _with_final_status(item: tuple[str, dict[str, list]]) -> Iterable[tuple[Any, tuple[str, Any, bool]]]:
    member_id, joined = item
    (status, *_) = joined["status"]  # every member of a candidate bucket is decided once
    for key, payload in joined["member"]:
        yield key, (member_id, payload, status)


class GreedyDedup(beam.PTransform):
    """``(id, payload, band keys)`` -> ``(id, kept id)`` for every dropped id.

    ``similarity`` verifies a pair (:class:`curation.greedy_dedup.Similarity`); ids absent
    from the output are kept. ``rounds`` only moves work between the parallel rounds and
    the one-worker rest: the output is the same for every value.
    """

    def __init__(self, similarity: Similarity, rounds: int = ROUNDS):
        super().__init__()
        if rounds < 0:
            raise ValueError(f"rounds must be at least 0, got {rounds}")
        self._similarity = similarity
        self._rounds = rounds

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        similarity = self._similarity
        candidates = (
            items
            | "BandMembers" >> beam.FlatMap(lambda item: [(key, (item[0], item[1])) for key in item[2]])
            | "GroupBands" >> beam.GroupByKey()
            | "CandidateBuckets" >> beam.FlatMap(_candidate_bucket)
        )
        open_buckets, decided = candidates, []
        for r in range(self._rounds):
            voted = open_buckets | f"Round{r}/Vote" >> beam.FlatMap(_vote, similarity).with_outputs(_VOTES, main="members")
            joined = {"member": voted.members, "vote": voted[_VOTES]} | f"Round{r}/JoinVotes" >> beam.CoGroupByKey()
            updated = joined | f"Round{r}/Decide" >> beam.FlatMap(_decide).with_outputs(_DECIDED, main="members")
            decided.append(updated[_DECIDED])
            open_buckets = updated.members | f"Round{r}/Regroup" >> beam.GroupByKey()
        decided.append(
            open_buckets
            | "Rest/OneKey" >> beam.Map(lambda bucket: (None, list(bucket[1])))
            | "Rest/Gather" >> beam.GroupByKey()
            | "Rest/InIdOrder" >> beam.FlatMap(_resolve_rest, similarity)
        )
        statuses = tuple(decided) | "Statuses" >> beam.Flatten()
        memberships = candidates | "Memberships" >> beam.FlatMap(
            lambda bucket: [(member_id, (bucket[0], payload)) for member_id, payload, _ in bucket[1]]
        )
        return (
            {"member": memberships, "status": statuses}
            | "JoinStatuses" >> beam.CoGroupByKey()
            | "DecidedBuckets" >> beam.FlatMap(_with_final_status)
            | "GroupDecided" >> beam.GroupByKey()
            | "KeptNearDuplicates" >> beam.FlatMap(lambda bucket: kept_witnesses(bucket[1], similarity))
            | "SmallestKept" >> beam.CombinePerKey(min)
        )


def _signed(doc: Any, settings: MinHashSettings) -> tuple[str, Any, list[bytes]]:
    sig = signature(doc.text, settings)
    return doc.id, sig, band_keys(sig, settings)


def _drop_marked(item: tuple[str, dict[str, list]], step: str, reason: str) -> Iterable[Any]:
    _, joined = item
    for doc in joined["doc"]:
        if joined["kept"]:
            yield TaggedOutput(REJECTS, reject(doc, step, reason, detail=f"kept {joined['kept'][0]}"))
        else:
            yield doc


class NearDedup(beam.PTransform):
    """MinHash LSH near-dedup by the rule of :class:`GreedyDedup`: a document that is a verified
    near duplicate of a kept document with a smaller id is dropped, naming the smallest such one.

    Works on any record with ``id`` and ``text``; drops are ``(step, "near_duplicate")`` rejects
    whose detail is ``kept <id>``.
    """

    def __init__(self, settings: MinHashSettings, step: str, rounds: int = ROUNDS):
        super().__init__()
        self._settings = settings
        self._step = step
        self._greedy = GreedyDedup(SignatureSimilarity(settings.threshold), rounds)

    def expand(self, docs: beam.PCollection):
        kept_by = (
            docs
            | "Signatures" >> beam.Map(_signed, self._settings)
            | "Greedy" >> self._greedy
        )
        joined = {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d.id, d)), "kept": kept_by} | "Join" >> beam.CoGroupByKey()
        return joined | "DropDuplicates" >> beam.FlatMap(_drop_marked, self._step, "near_duplicate").with_outputs(
            REJECTS, main="kept"
        )
