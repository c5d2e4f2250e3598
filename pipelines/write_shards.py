"""Shard writing that scales with the data: many small buckets, each about one shard.

One global combine counts and measures the samples; from those totals comes the
number of buckets, chosen so that a bucket (filled by a hash of the sample keys)
rarely outgrows one shard. Each sample is keyed by its bucket, the buckets are
grouped, and each bucket is sorted by key and rolled into shards on its own. A
writer therefore holds one bucket, about one shard, at a time, and there are about
as many buckets as shards for the runner to spread over its workers.

Everything that decides a shard's name and bytes is a pure function of the samples
(the totals are exact sums, the bucket a hash of the key, the order the key), so the
same samples give the same shards on every runner.

The cost of a bucket count that follows the data: keying waits for the totals (a
side input computed from the same samples), so a runner keeps the samples until
they are known; Dataflow breaks fusion there and writes them once more before the
``GroupByKey``, which is the only shuffle.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

from manifests.shards import Sample, ShardInfo, member_budget, plan_shards, shard_name, write_shard

HEADROOM_SD = 3.0
"""Standard deviations of a bucket's size kept free below one shard's limits: a
bucket outgrows one shard (and is written as two) about once in 700. With 10,000
samples per shard, buckets hold about 9,700."""


class SampleTotals(beam.CombineFn):
    """``(samples, bytes, sum of squared bytes)`` of a collection of samples.

    Bytes count only samples that fit in a shard's ``budget`` of member bytes: a
    larger one gets a shard of its own wherever it lands, so it takes no room in
    its bucket's shard.
    """

    def __init__(self, budget: int):
        super().__init__()
        self._budget = budget

    def create_accumulator(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    def add_input(self, totals: tuple[int, int, int], sample: Sample) -> tuple[int, int, int]:
        count, size, squares = totals
        nbytes = sample.nbytes
        if nbytes > self._budget:
            return (count + 1, size, squares)
        return (count + 1, size + nbytes, squares + nbytes * nbytes)

    def merge_accumulators(self, accumulators: Iterable[tuple[int, int, int]]) -> tuple[int, int, int]:
        count = size = squares = 0
        for c, b, q in accumulators:
            count, size, squares = count + c, size + b, squares + q
        return (count, size, squares)

    def extract_output(self, totals: tuple[int, int, int]) -> tuple[int, int, int]:
        return totals


def bucket_count(totals: tuple[int, int, int], max_samples: int, max_bytes: int) -> int:
    """Buckets to spread samples with these :class:`SampleTotals` over, so that a
    bucket's expected samples and bytes plus :data:`HEADROOM_SD` standard deviations
    stay within one shard's ``max_samples`` and ``max_bytes``.

    With ``n`` buckets a bucket's sample count is about Poisson (mean ``count/n``,
    variance the same) and its bytes compound Poisson (mean ``bytes/n``, variance
    ``squares/n``); each bound below is the positive root of ``mean + z*sd = limit``.
    """
    if max_samples < 1 or max_bytes < 1:
        raise ValueError(f"max_samples and max_bytes must be >= 1, got {max_samples}, {max_bytes}")
    count, size, squares = totals
    z = HEADROOM_SD
    root = (math.sqrt(z * z + 4 * max_samples) - z) / 2  # sqrt of the largest mean count
    buckets = count / (root * root)
    budget = member_budget(max_bytes)
    if size and budget <= 0:
        buckets = max(buckets, count)  # every sample is a shard of its own
    elif size:
        # with y = 1/sqrt(n): size*y^2 + z*sqrt(squares)*y = budget
        spread = z * math.sqrt(squares)
        y = 2 * budget / (spread + math.sqrt(spread * spread + 4 * size * budget))
        buckets = max(buckets, 1 / (y * y))
    return max(1, math.ceil(buckets))


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of a sample key: a stable hash, the same in every process."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % buckets


def _key_by_bucket(sample: Sample, buckets: int) -> tuple[int, Sample]:
    return bucket_of(sample.key, buckets), sample


def write_bucket(
    item: tuple[int, Iterable[Sample]], output_dir: str, prefix: str, max_samples: int, max_bytes: int
) -> Iterable[ShardInfo]:
    """Sorts one bucket's samples by key and writes them as shards ``{prefix}-{bucket}-{index}``,
    each to a temporary name first; yields their :class:`ShardInfo`."""
    bucket, samples = item
    ordered = sorted(samples, key=lambda s: s.key)
    for index, group in enumerate(plan_shards(ordered, max_samples, max_bytes)):
        relative = shard_name(prefix, bucket, index)
        final = FileSystems.join(output_dir, relative)
        temporary = final + ".inprogress"
        with FileSystems.create(temporary) as handle:
            info = write_shard(group, handle, relative)
        FileSystems.rename([temporary], [final])
        yield info


class WriteShards(beam.PTransform):
    """Writes samples as webdataset tars under ``DIR/shards/``; returns one
    :class:`ShardInfo` per shard.

    Samples are hashed by key into buckets of about one shard each (their number
    follows from the samples' count and bytes), sorted by key inside each bucket and
    rolled into shards by count and bytes, so the same samples always give the same
    shard names and bytes, on any runner, and no writer holds more than a bucket.
    """

    def __init__(self, output_dir: str, prefix: str, max_samples: int, max_bytes: int):
        super().__init__()
        if max_samples < 1 or max_bytes < 1:
            raise ValueError(f"max_samples and max_bytes must be >= 1, got {max_samples}, {max_bytes}")
        self._args = (output_dir, prefix, max_samples, max_bytes)

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        output_dir, prefix, max_samples, max_bytes = self._args
        buckets = (
            samples
            | "MeasureSamples" >> beam.CombineGlobally(SampleTotals(member_budget(max_bytes)))
            | "CountBuckets" >> beam.Map(bucket_count, max_samples, max_bytes)
        )
        return (
            samples
            | "KeyByBucket" >> beam.Map(_key_by_bucket, AsSingleton(buckets))
            | "GroupBuckets" >> beam.GroupByKey()
            | "WriteTars" >> beam.FlatMap(write_bucket, output_dir, prefix, max_samples, max_bytes)
        )
