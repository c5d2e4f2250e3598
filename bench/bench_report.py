"""Run report generation time (`manifests.report.write_report`) for 100k samples.

    python bench/bench_report.py [--samples 100000] [--per-shard 10000] [--rejects 20000] [--gallery 24]

Writes a caption dataset the way a run leaves it (shards of small JPEG + txt + json
samples with four scores and one of eight sources each, the manifest, one rejects
Parquet table with scores), then times the report at each size up to ``--samples``:
reading every shard (every sample's JSON for the histograms and the per-source counts,
every field of the gallery's first samples), reading the rejects, and rendering the page
(matplotlib charts, thumbnails). A plain pass over the same shards with `tarfile`,
reading every member, is what the shard reading is compared with. Seconds are wall time; ``cpu s`` is the whole
report's CPU time in this process, steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.records import Reject, to_row
from manifests import report
from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.shards import Sample, shard_name, write_shard

SOURCES = [f"laion/part-{n:05d}.parquet" for n in range(8)]


def _jpegs(count: int = 16) -> list[bytes]:
    images = []
    for n in range(count):
        image = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
        image.paste((16 * n, 80, 255 - 16 * n), (0, 0, 32, 16))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        images.append(buffer.getvalue())
    return images


def _sample(n: int, rng: random.Random, jpegs: list[bytes]) -> Sample:
    text = f"a photo of item {n} on a table"
    info = {"id": f"s{n:08d}", "source": f"{SOURCES[n % len(SOURCES)]}#{n}", "url": f"http://127.0.0.1:9/{n}.jpg",
            "text": text, "meta": {}, "stats": {"clip_score": rng.gauss(0.3, 0.05), "aesthetic": rng.uniform(3, 7),
                                                "language.en": rng.random(), "text_quality": rng.random()}}
    return Sample(key=f"s{n:08d}", fields={"jpg": jpegs[n % len(jpegs)], "txt": text.encode(),
                                           "json": json.dumps(info).encode()}, text_tokens=9, visual_tokens=128)


def write_dataset(out: Path, samples: int, per_shard: int, rejects: int, seed: int = 0) -> None:
    """Shards, manifest and rejects of a caption run with ``samples`` kept and ``rejects`` dropped."""
    rng, jpegs = random.Random(seed), _jpegs()
    (out / "shards").mkdir(parents=True)
    infos = []
    for index, start in enumerate(range(0, samples, per_shard)):
        path = shard_name("bench", 0, index)
        with open(out / path, "wb") as handle:
            batch = [_sample(n, rng, jpegs) for n in range(start, min(start + per_shard, samples))]
            infos.append(write_shard(batch, handle, path))
    dropped = [Reject(id=f"r{n:08d}", source=f"{SOURCES[n % len(SOURCES)]}#{n}", step="clip" if n % 4 else "fetch",
                      reason="low_clip_score" if n % 4 else "http_404", dead_letter=not n % 4,
                      url=f"http://127.0.0.1:9/r{n}.jpg", text=f"rejected {n}",
                      stats={"clip_score": rng.gauss(0.15, 0.05)} if n % 4 else {}) for n in range(rejects)]
    (out / "rejects").mkdir()
    pq.write_table(pa.Table.from_pylist([to_row(r) for r in dropped], schema=Reject.SCHEMA),
                   out / "rejects" / "rejects-00000-of-00001.parquet")
    counts = Counter((r.step, r.reason) for r in dropped)
    manifest = build_manifest(
        dataset="bench", config={"dataset": "bench"}, models=[{"name": "tiny", "role": "clip", "weights": "random-init"}],
        shards=infos, funnel=build_funnel(["read", "fetch", "clip"], samples + rejects, counts,
                                          {k: v for k, v in counts.items() if k[0] == "fetch"}),
        dead_letters=counts[("fetch", "http_404")], package_version="bench",
    )
    (out / "manifest.json").write_bytes(dump_manifest(manifest))


def _tar_pass(out: Path) -> float:
    start = time.perf_counter()
    for path in sorted((out / "shards").glob("*.tar")):
        with open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            for member in tar:
                tar.extractfile(member).read()
    return time.perf_counter() - start


def _phases(out: Path, gallery: int) -> dict[str, float]:
    """Seconds of each part of :func:`manifests.report.build_report`, then of the whole write."""
    manifest = json.loads((out / "manifest.json").read_text())
    source = report.Source("bench", str(out / "manifest.json"), manifest, None)
    start = time.perf_counter()
    scan = report._scan_sources([source], gallery, report.LOCAL)
    scanned = time.perf_counter()
    rejects = report._read_rejects(str(out / "rejects"), report.LOCAL)
    read = time.perf_counter()
    report._page(manifest, [source], scan, rejects)
    rendered, cpu = time.perf_counter(), time.process_time()
    path = report.write_report(str(out), gallery_size=gallery)
    total = time.perf_counter() - rendered
    return {"shards": scanned - start, "rejects": read - scanned, "page": rendered - read, "total": total,
            "cpu": time.process_time() - cpu, "html_kb": os.path.getsize(path) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--per-shard", type=int, default=10_000)
    parser.add_argument("--rejects", type=int, default=20_000)
    parser.add_argument("--gallery", type=int, default=report.GALLERY_SIZE)
    args = parser.parse_args()
    sizes = sorted({max(args.samples // 100, 1), args.samples // 10 or 1, args.samples})
    print(f"{'samples':>9} {'shards':>6} {'MB':>6} {'rejects':>8} {'tar pass s':>10} {'shards s':>9} "
          f"{'rejects s':>9} {'page s':>7} {'report s':>9} {'cpu s':>6} {'samples/s':>10} {'html KB':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        for samples in sizes:
            out = Path(scratch) / str(samples)
            rejects = args.rejects * samples // args.samples
            write_dataset(out, samples, args.per_shard, rejects)
            megabytes = sum(p.stat().st_size for p in (out / "shards").glob("*.tar")) / 1e6
            floor = _tar_pass(out)
            phases = _phases(out, args.gallery)
            print(f"{samples:>9,} {len(list((out / 'shards').glob('*.tar'))):>6} {megabytes:>6.0f} {rejects:>8,} "
                  f"{floor:>10.2f} {phases['shards']:>9.2f} {phases['rejects']:>9.2f} {phases['page']:>7.2f} "
                  f"{phases['total']:>9.2f} {phases['cpu']:>6.2f} {samples / phases['total']:>10,.0f} "
                  f"{phases['html_kb']:>8.0f}")


if __name__ == "__main__":
    main()
