"""Peak memory of the shard-writing step as the dataset grows: about one shard with
`pipelines.write_shards`, a fixed fraction of the dataset with the old partition writer.

    python bench/bench_write_memory.py [--samples 2000] [--scales 1 10] [--max-mb 20]

The dataset is ``samples x scale`` samples, each a random-byte ``jpg`` of 50 to 150 KB
plus a small ``json`` (so bytes, not headers, dominate), made on the fly from its
index (``sampledata.samples``). Each writer runs in a fresh child process that plays
one worker writing every group in turn, the way a runner hands a ``GroupByKey``
group to the write ``DoFn``: as an iterable that yields the group's samples one
after another (Dataflow pages large groups in from shuffle). The child reports its
peak RSS (``ru_maxrss``); the first row is a child that writes nothing, the
interpreter and imports alone. (A whole pipeline on the DirectRunner would measure
the runner instead: it holds every PCollection in memory.)

- **streaming buckets** (``pipelines.write_shards``): the samples' totals (one pass,
  as the global combine does), the bucket count from them, each sample keyed by
  ``bucket_of``, each bucket written by ``write_bucket``. The totals pass (the
  pipeline's global combine) is timed on its own: here it remakes every sample's
  random bytes, in a pipeline it measures samples that already exist.
- **baseline: 8 partitions**: the grouping of the writer this replaced, kept here
  only as the same-run baseline: samples keyed by a hash of their key modulo 8, each
  partition sorted in memory and rolled into shards (by ``write_bucket``: that part
  did not change).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
_MIN_IMAGE, _MAX_IMAGE = 50_000, 150_000


# --- baseline: the grouping of the writer that pipelines.write_shards replaced (old pipelines/io.py) ---
# Samples went to one of 8 partitions by this hash; each partition was then sorted by key
# and rolled into shards exactly as ``write_bucket`` does with a bucket, so the bench
# writes a partition with ``write_bucket``: only the grouping differs.

BASELINE_PARTITIONS = 8


def baseline_partition_of(key: str, partitions: int) -> int:
    """Deterministic shard partition of a sample key."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % partitions


# --- end of baseline ---


def _samples(indices: Iterable[int]) -> Iterator:
    """The group's samples, made one at a time: a runner's lazily paged group values."""
    from sampledata.samples import random_sample

    for index in indices:
        yield random_sample(index, 0, _MIN_IMAGE, _MAX_IMAGE)


def _write(writer: str, count: int, max_samples: int, max_bytes: int, output_dir: str) -> None:
    """Child process: one worker writes every group; prints groups, shards, seconds and peak RSS."""
    from manifests.shards import member_budget
    from pipelines.write_shards import SampleTotals, bucket_count, bucket_of, write_bucket

    start = time.perf_counter()
    group_of = None
    if writer == "buckets":
        combine = SampleTotals(member_budget(max_bytes))
        totals = combine.create_accumulator()
        for sample in _samples(range(count)):
            totals = combine.add_input(totals, sample)
        buckets = bucket_count(combine.extract_output(totals), max_samples, max_bytes)
        group_of = lambda key: bucket_of(key, buckets)  # noqa: E731
    elif writer == "partitions":
        group_of = lambda key: baseline_partition_of(key, BASELINE_PARTITIONS)  # noqa: E731
    measured = time.perf_counter()
    groups: dict[int, list[int]] = defaultdict(list)
    shards = 0
    if group_of:
        for index in range(count):
            groups[group_of(f"s{index:08d}")].append(index)
        for group in sorted(groups):
            infos = write_bucket((group, _samples(groups[group])), output_dir, "bench", max_samples, max_bytes)
            shards += sum(1 for _ in infos)
    seconds = time.perf_counter() - measured
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"groups": len(groups), "shards": shards, "measure_seconds": measured - start,
                      "seconds": seconds, "peak": peak}))


def _measure(writer: str, count: int, max_samples: int, max_bytes: int, output_dir: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--child", writer, str(count), str(max_samples), str(max_bytes), output_dir]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _shard_bytes(directory: Path) -> tuple[int, int]:
    paths = list((directory / "shards").glob("*.tar")) if (directory / "shards").exists() else []
    return len(paths), sum(p.stat().st_size for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="samples at scale 1")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--max-mb", type=float, default=20, help="shard max_bytes, MB")
    parser.add_argument("--max-samples", type=int, default=10_000)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        writer, count, max_samples, max_bytes, output_dir = args.child
        _write(writer, int(count), int(max_samples), int(max_bytes), output_dir)
        return
    max_bytes = int(args.max_mb * 1e6)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        base = _measure("none", 0, args.max_samples, max_bytes, tmp)
        rows.append(("imports only", 0, 0, 0, 0, 0.0, 0.0, base["peak"]))
        for scale in args.scales:
            count = args.samples * scale
            for writer, label in (("buckets", "streaming buckets"), ("partitions", "baseline: 8 partitions")):
                out = Path(tmp) / f"{writer}-{scale}"
                result = _measure(writer, count, args.max_samples, max_bytes, str(out))
                shards, data = _shard_bytes(out)
                if shards != result["shards"]:
                    raise SystemExit(f"{label}: {shards} shard files, {result['shards']} reported")
                rows.append((label, count, data, result["groups"], shards, result["measure_seconds"],
                             result["seconds"], result["peak"]))
                subprocess.run(["rm", "-rf", str(out)], check=True)
    print(f"\nshard limits: max_bytes {args.max_mb:g} MB, max_samples {args.max_samples}")
    print("\n| writer | samples | data MB | groups | shards | totals s | write s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for label, count, data, groups, shards, measure, seconds, peak in rows:
        print(f"| {label} | {count} | {data / 1e6:.0f} | {groups} | {shards} | {measure:.1f} | {seconds:.1f} "
              f"| {peak / 2**20:.0f} |")
    for label in ("streaming buckets", "baseline: 8 partitions"):
        peaks = [row for row in rows if row[0] == label]
        growth = (peaks[-1][7] - peaks[0][7]) / 2**20
        print(f"\n{label}: peak RSS from {peaks[0][1]} to {peaks[-1][1]} samples: {growth:+.0f} MB")


if __name__ == "__main__":
    main()
