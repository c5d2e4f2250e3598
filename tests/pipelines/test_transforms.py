"""ResolveCorpusQuantile: an exact corpus-quantile threshold, the same on every runner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from filters.clip_score import ClipScoreFilter
from pipelines.transforms import ResolveCorpusQuantile
from shard_samples import MULTIPROCESS

RUNNERS = {"direct": ["--runner=DirectRunner"], "multiprocess": MULTIPROCESS}
PARTS, PER_PART = 20, 10_000  # 200,000 scores: ApproximateQuantiles' error would show


def records_maker(per_part: int, decimals: int | None):
    """``part -> records`` of one part of the corpus, a closure pickled by value (workers cannot
    import this test module). Scores ~ N(0.3, 0.05), rounded to ``decimals`` for ties; in part 3
    every tenth record has no score (or NaN)."""

    def make(part: int) -> list:
        import numpy as np

        from curation.records import TextDoc

        scores = np.random.default_rng(part).normal(0.3, 0.05, per_part)
        if decimals is not None:
            scores = np.round(scores, decimals)
        if part == 3:
            scores[::10] = np.nan
        return [
            TextDoc(id=f"{part}-{i}", source="", url="", text="",
                    stats={"clip_score": float(s)} if s == s or i % 20 == 0 else {})
            for i, s in enumerate(scores)
        ]

    return make


def corpus_scores(parts: int, per_part: int, decimals: int | None = None) -> np.ndarray:
    make = records_maker(per_part, decimals)
    scores = np.array([r.stats.get("clip_score", math.nan) for p in range(parts) for r in make(p)])
    return scores[~np.isnan(scores)]


def resolve(keep_fractions: list[float], args: list[str], out: Path, parts: int = PARTS, per_part: int = PER_PART,
            decimals: int | None = None) -> list[float]:
    """The thresholds ResolveCorpusQuantile sets for each keep fraction, over records made
    inside the pipeline."""
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        records = pipeline | beam.Create(range(parts)) | beam.FlatMap(records_maker(per_part, decimals))
        for i, fraction in enumerate(keep_fractions):
            _ = (
                records
                | f"Resolve{i}" >> ResolveCorpusQuantile(ClipScoreFilter(threshold=None, keep_fraction=fraction))
                | f"Show{i}" >> beam.Map(lambda filt, i=i: json.dumps([i, filt.threshold, filt.needs_corpus_quantile]))
                | f"Write{i}" >> beam.io.WriteToText(str(out / f"threshold{i}"))
            )
    rows = sorted(json.loads(line) for path in out.glob("threshold*") for line in path.read_text().splitlines())
    assert [i for i, _, _ in rows] == list(range(len(keep_fractions)))
    assert not any(unresolved for _, _, unresolved in rows)
    return [threshold for _, threshold, _ in rows]


def kth_largest(scores: np.ndarray, keep_fraction: float) -> tuple[float, int]:
    """The exact threshold and how many records it keeps: the k-th largest, k = round(N * fraction)."""
    k = max(1, round(len(scores) * keep_fraction))
    return float(np.partition(scores, len(scores) - k)[len(scores) - k]), k


FRACTIONS = [0.3137, 0.9, 0.0005]


@pytest.mark.parametrize("runner", RUNNERS)
def test_threshold_is_the_exact_kth_largest_score(runner, tmp_path):
    """200,000 scores: the threshold is the exact k-th largest and keeps the requested share to a record."""
    scores = corpus_scores(PARTS, PER_PART)
    assert len(scores) == PARTS * PER_PART - PER_PART // 10  # no score and NaN take no part
    for fraction, threshold in zip(FRACTIONS, resolve(FRACTIONS, RUNNERS[runner], tmp_path)):
        expected, k = kth_largest(scores, fraction)
        kept = int(np.count_nonzero(scores >= threshold))
        assert abs(kept - len(scores) * fraction) <= 1, (fraction, kept, len(scores) * fraction)
        assert threshold == expected, fraction
        assert kept == k, fraction  # continuous scores: no ties
        assert np.count_nonzero(scores >= np.quantile(scores, 1 - fraction, method="inverted_cdf")) - kept in (0, 1)


def test_ties_at_the_threshold_are_all_kept_and_small_corpora(tmp_path):
    """Scores to two decimals (about 30 records share each value): the threshold is still the
    k-th largest and every record tied with it stays; a corpus of one keeps its record."""
    fractions = [0.3137, 0.5, 1.0, 0.001]
    scores = corpus_scores(4, 1000, decimals=2)
    thresholds = resolve(fractions, RUNNERS["direct"], tmp_path / "ties", parts=4, per_part=1000, decimals=2)
    for fraction, threshold in zip(fractions, thresholds):
        expected, k = kth_largest(scores, fraction)
        assert threshold == expected
        tied = int(np.count_nonzero(scores == threshold))
        assert tied > 1
        assert int(np.count_nonzero(scores > threshold)) < k <= int(np.count_nonzero(scores >= threshold))
    assert thresholds[2] == scores.min()  # keep everything
    (one,) = resolve([0.3], RUNNERS["direct"], tmp_path / "one", parts=1, per_part=1)
    assert one == corpus_scores(1, 1)[0]
    (none,) = resolve([0.3], RUNNERS["direct"], tmp_path / "none", parts=0, per_part=1)
    assert none == 0.0  # no scored record: the threshold judges nothing
