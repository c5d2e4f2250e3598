"""Shared Beam transforms: apply a filter, count the funnel.

Every step that can drop or fail a record emits :class:`curation.records.Reject`
rows on a ``rejects`` output instead of raising, so a bad record never fails the
job and every input is accounted for. The funnel is counted from those rows
(exact on every runner); Beam metrics mirror it for live monitoring.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton, TaggedOutput

from curation.records import reject
from curation.tokens import TextTokenizer, TokenSettings
from filters.base import Filter
from filters.clip_score import SCORE_KEY, ClipScoreFilter

METRICS_NAMESPACE = "curation"
REJECTS = "rejects"
QUANTILE_RESOLUTION = 1000  # a corpus-quantile CLIP threshold is resolved to 0.1%


class Split(NamedTuple):
    """The two outputs of a step: records that go on and rejects."""

    kept: beam.PCollection
    rejects: beam.PCollection


def count_drop(step: str, reason: str) -> None:
    """Mirrors a drop in Beam metrics as ``dropped.<step>.<reason>``."""
    Metrics.counter(METRICS_NAMESPACE, f"dropped.{step}.{reason}").inc()


class _FilterFn(beam.DoFn):
    def __init__(self, filt: Filter, step: str):
        self._filter = filt
        self._step = step

    def process(self, record: Any, resolved: Filter | None = None) -> Iterable[Any]:
        filt = resolved or self._filter
        try:
            verdict = filt(record)
        except Exception as error:  # a filter bug on one record is a dead letter, not a crash
            count_drop(self._step, "filter_error")
            yield TaggedOutput(
                REJECTS,
                reject(record, self._step, "filter_error", dead_letter=True, detail=repr(error)),
            )
            return
        if verdict.keep:
            Metrics.counter(METRICS_NAMESPACE, f"kept.{self._step}").inc()
            yield record
        else:
            count_drop(self._step, verdict.reason)
            yield TaggedOutput(REJECTS, reject(record, self._step, verdict.reason))


class ApplyFilter(beam.PTransform):
    """Applies a :class:`filters.base.Filter`: scores into ``stats``, drops to rejects.

    Args:
        filt: the filter.
        step: the funnel step name (defaults to the filter's name).
        resolved: optional singleton PCollection holding a filter to use instead
            of ``filt`` (e.g. a CLIP filter whose corpus quantile was computed in
            the pipeline).
    """

    def __init__(self, filt: Filter, step: str | None = None, resolved: beam.PCollection | None = None):
        super().__init__()
        self._filter = filt
        self._step = step or filt.name
        self._resolved = resolved

    def expand(self, records: beam.PCollection) -> Split:
        side = [AsSingleton(self._resolved)] if self._resolved is not None else []
        outputs = records | "Judge" >> beam.ParDo(_FilterFn(self._filter, self._step), *side).with_outputs(
            REJECTS, main="kept"
        )
        return Split(outputs.kept, outputs[REJECTS])


class CountFunnel(beam.PTransform):
    """Counts inputs and rejects by ``(step, reason)`` into one summary dict.

    Input: a dict ``{"inputs": PCollection, "rejects": PCollection[Reject]}``.
    Output: a singleton PCollection of ``{"inputs": n, "dropped": {(step, reason): n},
    "dead_letters": n}``.
    """

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        inputs = pcolls["inputs"] | "CountInputs" >> beam.combiners.Count.Globally()
        rejects = pcolls["rejects"]
        dropped = (
            rejects
            | "ReasonKey" >> beam.Map(lambda r: ((r.step, r.reason), 1))
            | "CountReasons" >> beam.CombinePerKey(sum)
            | "ReasonsToList" >> beam.combiners.ToList()
        )
        dead = (
            rejects
            | "OnlyDeadLetters" >> beam.Filter(lambda r: r.dead_letter)
            | "CountDeadLetters" >> beam.combiners.Count.Globally()
        )
        return (
            inputs.pipeline
            | "FunnelSeed" >> beam.Create([None])
            | "AssembleFunnel"
            >> beam.Map(
                lambda _, n, reasons, n_dead: {
                    "inputs": n,
                    "dropped": dict(reasons),
                    "dead_letters": n_dead,
                },
                AsSingleton(inputs),
                AsSingleton(dropped),
                AsSingleton(dead),
            )
        )


def _resolve_clip_filter(quantiles: list[float], filt: ClipScoreFilter) -> ClipScoreFilter:
    if not quantiles:
        return filt.with_threshold(0.0)
    return filt.with_threshold(quantiles[round(filt.quantile * (len(quantiles) - 1))])


class FilterClipScore(beam.PTransform):
    """Applies a :class:`ClipScoreFilter` to records scored in ``stats["clip_score"]``.

    With ``keep_fraction`` the threshold is the corpus quantile of the scores,
    computed in the pipeline (records without a score take no part in it).
    """

    def __init__(self, filt: ClipScoreFilter):
        super().__init__()
        self._filter = filt

    def expand(self, records: beam.PCollection) -> Split:
        resolved = None
        if self._filter.needs_corpus_quantile:
            resolved = (
                records
                | "Scores" >> beam.Map(lambda r: r.stats.get(SCORE_KEY, float("nan")))
                | "ScoredOnly" >> beam.Filter(lambda score: score == score)
                | "ScoreQuantiles" >> beam.ApproximateQuantiles.Globally(QUANTILE_RESOLUTION + 1)
                | "ResolveThreshold" >> beam.Map(_resolve_clip_filter, self._filter)
            )
        return records | "ClipFilter" >> ApplyFilter(self._filter, step=SCORE_KEY, resolved=resolved)


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
