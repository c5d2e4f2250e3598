"""Small Beam transforms the executor and the pipelines share.

Every step that can drop or fail a record emits :class:`curation.records.Reject`
rows on a ``rejects`` output instead of raising, so a bad record never fails the
job and every input is accounted for.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import AsSingleton

from curation.quantile import DIGITS, PASSES, Selection, order_keys
from curation.tokens import TextTokenizer, TokenSettings

METRICS_NAMESPACE = "curation"
REJECTS = "rejects"
BATCH = 8192  # scores per batch of the corpus-quantile passes


class Split(NamedTuple):
    """The two outputs of a step: records that go on and rejects."""

    kept: beam.PCollection
    rejects: beam.PCollection


def _counts(keys: np.ndarray, selection: Selection | None) -> np.ndarray:
    """A later pass over one batch of keys (nothing to count when there are no scores)."""
    return selection.counts(keys) if selection is not None else np.zeros(DIGITS, dtype=np.int64)


class _SumCounts(beam.CombineFn):
    """Adds counter arrays; integer sums, the same in any order."""

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(DIGITS, dtype=np.int64)

    def add_input(self, accumulator: np.ndarray, counts: np.ndarray) -> np.ndarray:
        accumulator += counts
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        return sum(accumulators, self.create_accumulator())

    def extract_output(self, accumulator: np.ndarray) -> np.ndarray:
        return accumulator


def _keep_fraction(filt: Any) -> float:
    fraction = getattr(filt, "keep_fraction", None)
    return float(fraction) if fraction is not None else 1.0 - filt.quantile


def _start(counts: np.ndarray, filt: Any) -> Selection | None:
    return Selection.start(counts, _keep_fraction(filt))


def _refine(counts: np.ndarray, selection: Selection | None) -> Selection | None:
    return selection.refine(counts) if selection is not None else None


def _resolve_threshold(counts: np.ndarray, selection: Selection | None, filt: Any) -> Any:
    if selection is None:  # no scored record: nothing to judge by the quantile
        return filt.with_threshold(0.0)
    return filt.with_threshold(selection.refine(counts).threshold)


class ResolveCorpusQuantile(beam.PTransform):
    """A singleton holding ``filt`` with its threshold set to the exact corpus quantile of the
    scores in ``stats[filt.name]`` (records without a score, or with NaN, take no part in it).

    Of ``n`` scores the threshold is the k-th largest, ``k = max(1, round(n * keep_fraction))``
    (``keep_fraction`` is ``1 - filt.quantile``): exactly, by four passes of radix selection over
    the scores with 65,536 integer counters each (:mod:`curation.quantile`), so the same
    threshold on every runner at any size, in memory independent of the corpus. Records tied
    with it are all kept (score >= threshold); with no scored record the threshold is 0.0.
    """

    def __init__(self, filt: Any):
        super().__init__()
        self._filter = filt

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        key, filt = self._filter.name, self._filter
        keys = (  # the scores' order keys, in batches: each pass is numpy over a batch
            records
            | "Scores" >> beam.Map(lambda r: float(r.stats.get(key, float("nan"))))
            | "ScoredOnly" >> beam.Filter(lambda score: score == score)
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=BATCH)
            | "Keys" >> beam.Map(order_keys)
        )
        selection = (
            keys
            | "Pass0/Count" >> beam.Map(Selection.first_counts)
            | "Pass0/Sum" >> beam.CombineGlobally(_SumCounts())
            | "Pass0/Select" >> beam.Map(_start, filt)
        )
        for p in range(1, PASSES):
            counts = (
                keys
                | f"Pass{p}/Count" >> beam.Map(_counts, AsSingleton(selection))
                | f"Pass{p}/Sum" >> beam.CombineGlobally(_SumCounts())
            )
            step = _refine if p < PASSES - 1 else _resolve_threshold  # 64 bits known: a float at once
            args = (AsSingleton(selection), filt) if step is _resolve_threshold else (AsSingleton(selection),)
            selection = counts | f"Pass{p}/Select" >> beam.Map(step, *args)
        return selection


class ToSamples(beam.DoFn):
    """Turns kept records into shard samples with ``to_sample(record, tokenizer, image_resolution)``,
    the tokenizer loaded once per worker."""

    def __init__(self, tokens: TokenSettings, to_sample: Callable[[Any, TextTokenizer, str], Any]):
        self._tokens = tokens
        self._to_sample = to_sample

    def setup(self) -> None:
        self._tokenizer = TextTokenizer.load(self._tokens.text_tokenizer)

    def process(self, record: Any) -> Iterable[Any]:
        yield self._to_sample(record, self._tokenizer, self._tokens.image_resolution)
