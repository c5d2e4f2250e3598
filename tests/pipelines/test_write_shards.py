"""WriteShards: buckets of about one shard, sorted, identical on every runner, bounded per writer."""

import random
import tarfile
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from manifests.shards import Sample, archive_bytes, member_budget
from pipelines import write_shards
from pipelines.write_shards import HEADROOM_SD, WriteShards, bucket_count, bucket_of
from sampledata.samples import random_sample
from shard_samples import MULTIPROCESS

DIRECT = ["--runner=DirectRunner"]
MAX_SAMPLES = 12
MAX_BYTES = 24 * 1024  # room for about 5 random samples (0.5 to 3 KB, plus tar headers)
OVERSIZED = 2 * MAX_BYTES


def make_samples(count: int, oversized: int = 0, seed: int = 0) -> list[Sample]:
    """``count`` samples, plus ``oversized`` ones larger than a shard (indices from 10**6)."""
    big = range(10**6, 10**6 + oversized)
    small = [random_sample(i, seed) for i in range(count)]
    return small + [random_sample(i, seed, OVERSIZED, OVERSIZED) for i in big]


def write(
    count: int, out: Path, args: list[str], oversized: int = 0, max_samples: int = MAX_SAMPLES, seed: int = 0
) -> None:
    """Writes :func:`make_samples`, made inside the pipeline from their indices (a pickled
    payload of random bytes would cost more than the run)."""
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        small = pipeline | "Small" >> beam.Create(range(count)) | "MakeSmall" >> beam.Map(random_sample, seed)
        large = (
            pipeline
            | "Large" >> beam.Create(range(10**6, 10**6 + oversized))
            | "MakeLarge" >> beam.Map(random_sample, seed, OVERSIZED, OVERSIZED)
        )
        _ = (small, large) | beam.Flatten() | WriteShards(str(out), "test", max_samples, MAX_BYTES)


def shard_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def shard_keys(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        names = [member.name for member in tar.getmembers()]
    return list(dict.fromkeys(name.split(".", 1)[0] for name in names))


@pytest.fixture(scope="module")
def samples():
    return make_samples(300, oversized=2)


@pytest.fixture(scope="module")
def outputs(samples, tmp_path_factory):
    """One run per runner. (The PortableRunner writes the same shards too: test_pairs runs the
    whole pipeline, this transform included, on all three.)"""
    found = {}
    for name, args in {"direct": DIRECT, "multiprocess": MULTIPROCESS}.items():
        out = tmp_path_factory.mktemp(name)
        write(300, out, args, oversized=2)
        found[name] = out
    return found


def test_every_sample_is_written_once_in_key_order_within_the_limits(samples, outputs):
    out = outputs["direct"]
    by_key = {s.key: s for s in samples}
    seen = Counter()
    for path in sorted((out / "shards").glob("*.tar")):
        keys = shard_keys(path)
        assert keys == sorted(keys), path.name
        seen.update(keys)
        shard = [by_key[k] for k in keys]
        assert len(shard) <= MAX_SAMPLES
        assert path.stat().st_size == archive_bytes(sum(s.nbytes for s in shard))
        assert path.stat().st_size <= MAX_BYTES or len(shard) == 1, path.name
        with tarfile.open(path) as tar:
            for sample in shard:
                for ext, data in sample.fields.items():
                    assert tar.extractfile(f"{sample.key}.{ext}").read() == data
    assert seen == Counter(list(by_key))
    assert not list((out / "shards").glob("*.inprogress"))


def test_buckets_spread_the_writing_and_few_split(outputs):
    names = list(shard_files(outputs["direct"]))
    buckets = Counter(name.rsplit("-", 2)[1] for name in names)
    assert len(buckets) > 20  # about one shard each, not a handful of big partitions
    assert sum(n > 1 for n in buckets.values()) <= 0.2 * len(buckets)


def test_runners_write_identical_shards(outputs):
    reference = shard_files(outputs["direct"])
    assert reference
    assert shard_files(outputs["multiprocess"]) == reference


def test_a_writer_holds_one_bucket_of_about_a_shard_however_large_the_dataset(tmp_path, monkeypatch):
    """The largest bucket the writing function materialises (the list it sorts and rolls into
    shards) stays about one shard's bytes when the dataset grows tenfold."""
    materialised = []
    plan = write_shards.plan_shards

    def recording_plan(ordered, max_samples, max_bytes):
        ordered = list(ordered)
        materialised.append(sum(s.nbytes for s in ordered))
        return plan(ordered, max_samples, max_bytes)

    monkeypatch.setattr(write_shards, "plan_shards", recording_plan)
    largest = {}
    for scale in (1, 10):
        materialised.clear()
        write(200 * scale, tmp_path / str(scale), DIRECT, max_samples=10_000, seed=scale)
        assert len(materialised) > 10 * scale  # the writing function ran once per bucket
        largest[scale] = max(materialised)
    assert largest[10] <= 1.5 * MAX_BYTES, largest
    assert largest[10] <= 2 * largest[1], largest


def test_bucket_count_leaves_headroom_for_hash_variance():
    assert bucket_count((0, 0, 0), 10, 1000) == 1
    # 10,000 samples a shard: buckets hold about 9,700 (three standard deviations below)
    per_bucket = 1_000_000 / bucket_count((1_000_000, 0, 0), 10_000, 10**12)
    assert 9_600 < per_bucket < 9_750
    # bytes decide: 1 GB shards of 100 KB samples, 1 TB of them
    size, count = 100_000, 10_000_000
    n = bucket_count((count, count * size, count * size * size), 10**9, 10**9)
    assert 0.96 * member_budget(10**9) < count * size / n < 0.98 * member_budget(10**9)
    # samples larger than a shard are not counted in the bytes
    assert bucket_count((1000, 0, 0), 10_000, 1000) == 1
    with pytest.raises(ValueError):
        bucket_count((1, 1, 1), 0, 1000)


def test_buckets_rarely_outgrow_a_shard():
    rng = random.Random(5)
    sizes = {f"k{i}": rng.randint(500, 3000) for i in range(20_000)}
    totals = (len(sizes), sum(sizes.values()), sum(s * s for s in sizes.values()))
    max_samples, max_bytes = 100, 200_000
    n = bucket_count(totals, max_samples, max_bytes)
    counts, loads = Counter(), Counter()
    for key, size in sizes.items():
        counts[bucket_of(key, n)] += 1
        loads[bucket_of(key, n)] += size
    split = sum(counts[b] > max_samples or loads[b] > member_budget(max_bytes) for b in counts)
    assert split <= 0.02 * n
    assert sum(loads.values()) / n > 0.6 * member_budget(max_bytes)  # buckets still fill most of a shard
    assert HEADROOM_SD >= 2
