"""The trainer-side reader: samples/s and MB/s into a torch DataLoader, next to plain webdataset.

    python bench/bench_reader.py [--samples 20000] [--shards 40] [--workers 1 2 4] [--decode pil]

Writes one dataset of JPEG-plus-text samples (about 30 kB each, the size of a
LAION image at 256 px) and reads one epoch of it through a ``DataLoader`` with
1, 2 and 4 workers, twice per setting:

* ``mixture_dataset(manifest)``: the resumable reader (one global order, shards
  split by position, state at any world size);
* ``webdataset.WebDataset(urls, shardshuffle=False)`` split by worker, the
  plain baseline, with the same decoder.

Both decode the images to PIL (``--decode none`` keeps bytes, which isolates
the reading). The table gives the best of the rounds. Then the cost of
``state_dict()`` and of ``load_state_dict()`` plus reading the first sample
after resuming mid-epoch (the resume reads forward inside one shard).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.reader import mixture_dataset, sample_decoder, shard_urls
from manifests.shards import Sample, shard_name, write_shard


def _jpeg(rng: np.random.Generator, side: int = 256) -> bytes:
    pixels = rng.integers(0, 255, size=(side // 8, side // 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_dataset(folder: str, samples: int, shards: int) -> str:
    rng = np.random.default_rng(0)
    images = [_jpeg(rng) for _ in range(64)]
    os.makedirs(os.path.join(folder, "shards"), exist_ok=True)
    per_shard, infos = -(-samples // shards), []
    for shard in range(shards):
        items = [
            Sample(key=f"s{i:08d}", fields={"jpg": images[i % 64], "txt": f"caption {i}".encode(),
                                            "json": json.dumps({"i": i}).encode()}, text_tokens=4)
            for i in range(shard * per_shard, min(samples, (shard + 1) * per_shard))
        ]
        path = shard_name("bench", 0, shard)
        with open(os.path.join(folder, path), "wb") as handle:
            infos.append(write_shard(items, handle, path))
    manifest = build_manifest(dataset="bench", config={}, models=[], shards=infos,
                              funnel=build_funnel(["read"], samples, {}), dead_letters=0, package_version="0")
    path = os.path.join(folder, "manifest.json")
    with open(path, "wb") as handle:
        handle.write(dump_manifest(manifest))
    return path


def _epoch(dataset, workers: int) -> tuple[int, float]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    start, count = time.perf_counter(), 0
    for _ in loader:
        count += 1
    return count, time.perf_counter() - start


def _plain(urls: list[str], decode: str | None):
    dataset = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node,
                             workersplitter=wds.split_by_worker, empty_check=False)
    return dataset.map(sample_decoder(decode)) if decode else dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--decode", default="pil", help="webdataset image spec, or none")
    args = parser.parse_args()
    decode = None if args.decode == "none" else args.decode
    with tempfile.TemporaryDirectory() as folder:
        manifest = write_dataset(folder, args.samples, args.shards)
        urls = shard_urls(manifest)
        megabytes = sum(os.path.getsize(url) for url in urls) / 1e6
        print(f"{args.samples} samples in {args.shards} shards, {megabytes:.0f} MB, decode={args.decode}, "
              f"{os.cpu_count()} cores\n")
        print("| workers | reader | samples/s | MB/s | vs webdataset |\n|---|---|---|---|---|")
        for workers in args.workers:
            best = {}
            for _ in range(args.rounds):
                for name, make in (("webdataset.WebDataset", lambda: _plain(urls, decode)),
                                   ("mixture_dataset", lambda: mixture_dataset(manifest, decode=decode))):
                    count, seconds = _epoch(make(), workers)
                    assert count == args.samples, (name, count)
                    best[name] = min(best.get(name, float("inf")), seconds)
            for name in ("webdataset.WebDataset", "mixture_dataset"):
                ratio = best["webdataset.WebDataset"] / best[name]
                print(f"| {workers} | {name} | {args.samples / best[name]:,.0f} | {megabytes / best[name]:.1f} | "
                      f"{ratio:.2f}x |")
        dataset = mixture_dataset(manifest, world_size=2, decode=decode)
        calls = 10000
        start = time.perf_counter()
        for _ in range(calls):
            state = dataset.state_dict(consumed=len(dataset) // 2)
        per_call = (time.perf_counter() - start) / calls
        start = time.perf_counter()
        resumed = mixture_dataset(manifest, world_size=1, decode=decode)
        resumed.load_state_dict(state)
        next(iter(resumed))
        resume = time.perf_counter() - start
        print(f"\nstate_dict(): {per_call * 1e6:.1f} us per call ({len(json.dumps(state))} bytes of JSON); "
              f"load_state_dict() + first sample at position {state['position']}: {resume * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
