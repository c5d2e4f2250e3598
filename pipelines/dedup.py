"""Near-duplicate removal shared by the text and interleaved pipelines (MinHash LSH, :mod:`curation.minhash`)."""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from curation.minhash import MinHashSettings, band_keys, duplicates_in_bucket, signature
from curation.records import reject
from pipelines.transforms import REJECTS


def _drop_marked(item: tuple[str, dict[str, list]], step: str, reason: str) -> Iterable[Any]:
    _, joined = item
    for doc in joined["doc"]:
        if joined["mark"]:
            yield TaggedOutput(REJECTS, reject(doc, step, reason, detail=f"kept {min(joined['mark'])}"))
        else:
            yield doc


class NearDedup(beam.PTransform):
    """MinHash LSH: documents sharing a band with a verified near-duplicate of smaller id are dropped.

    Works on any record with ``id`` and ``text``; drops are ``(step, "near_duplicate")`` rejects.
    """

    def __init__(self, settings: MinHashSettings, step: str):
        super().__init__()
        self._settings = settings
        self._step = step

    def expand(self, docs: beam.PCollection):
        settings = self._settings
        duplicates = (
            docs
            | "Signatures" >> beam.Map(lambda d: (d.id, signature(d.text, settings)))
            | "BandKeys" >> beam.FlatMap(lambda kv: [(key, kv) for key in band_keys(kv[1], settings)])
            | "GroupBands" >> beam.GroupByKey()
            | "VerifyBuckets" >> beam.FlatMap(lambda kv: duplicates_in_bucket(list(kv[1]), settings.threshold))
        )
        joined = {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d.id, d)), "mark": duplicates} | "Join" >> beam.CoGroupByKey()
        return joined | "DropDuplicates" >> beam.FlatMap(_drop_marked, self._step, "near_duplicate").with_outputs(
            REJECTS, main="kept"
        )
