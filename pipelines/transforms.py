"""Small Beam transforms the executor and the pipelines share.

Every step that can drop or fail a record emits :class:`curation.records.Reject`
rows on a ``rejects`` output instead of raising, so a bad record never fails the
job and every input is accounted for.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import apache_beam as beam

from curation.tokens import TextTokenizer, TokenSettings

METRICS_NAMESPACE = "curation"
REJECTS = "rejects"
QUANTILE_RESOLUTION = 1000  # a corpus-quantile threshold is resolved to 0.1%


class Split(NamedTuple):
    """The two outputs of a step: records that go on and rejects."""

    kept: beam.PCollection
    rejects: beam.PCollection


def _resolve_threshold(quantiles: list[float], filt: Any) -> Any:
    if not quantiles:
        return filt.with_threshold(0.0)
    return filt.with_threshold(quantiles[round(filt.quantile * (len(quantiles) - 1))])


class ResolveCorpusQuantile(beam.PTransform):
    """A singleton holding ``filt`` with its threshold set to the corpus quantile of the
    scores in ``stats[filt.name]`` (records without a score take no part in it)."""

    def __init__(self, filt: Any):
        super().__init__()
        self._filter = filt

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        key = self._filter.name
        return (
            records
            | "Scores" >> beam.Map(lambda r: r.stats.get(key, float("nan")))
            | "ScoredOnly" >> beam.Filter(lambda score: score == score)
            | "ScoreQuantiles" >> beam.ApproximateQuantiles.Globally(QUANTILE_RESOLUTION + 1)
            | "ResolveThreshold" >> beam.Map(_resolve_threshold, self._filter)
        )


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
