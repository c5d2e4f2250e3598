"""Images per CPU-second of `curate pairs` (fetch + normalise + filters + shards; CLIP, the NSFW
model and the report aside, as img2dataset has none of them) next to img2dataset downloading the
same Parquet file from the same loopback server.

    python bench/bench_pairs.py [--images 3000] [--threads 32] [--repeats 1]

The image server runs in its own process; each tool runs in a child process so its
CPU time can be measured (``RUSAGE_CHILDREN``). "Per core" is images per CPU-second
of the tool's processes, which is fair even though the server shares the machine.
img2dataset runs from its own virtualenv (``--img2dataset-python``, made by
``make bench``) because its pins clash with this project's.

Both tools get the same settings: the same Parquet file (``URL`` and ``TEXT`` columns, the
caption written next to each image), the same thread count, no resize, the original bytes of
a JPEG stored as they are and any other image re-encoded as JPEG (ours: ``image.reencode:
keep``; img2dataset: ``skip_reencode=True``, without which it decodes and re-encodes every
JPEG at quality 95), a 64 px minimum side, a 3:1 aspect cap, and webdataset tars.

Each tool also runs on a tenth of the URLs. The whole run's images per CPU-second include
what a run pays once (interpreter, imports, pipeline construction, process start-up); the
difference between the two runs is the cost of the extra images alone, the "marginal" rate
that a large dataset converges to. ``--repeats`` runs everything that many times and takes
the median CPU time of each run, for a machine shared with other work.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", no_proxy="127.0.0.1,localhost")


def _serve(queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    from sampledata.pairs import ImageServer

    with ImageServer() as server:
        queue.put(server.base_url)
        stop.wait()


def _warm(urls: list[str]) -> None:
    """Fetches every URL once so the server's image cache is full before either tool runs."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda url: opener.open(url, timeout=30).read(), urls))


def _timed(command: list[str]) -> tuple[float, float]:
    """Runs a child process; returns (wall seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr[-2000:]}")
    return wall, cpu


def _count_images(directory: Path) -> int:
    count = 0
    for path in directory.rglob("*.tar"):
        with tarfile.open(path) as tar:
            count += sum(m.name.endswith((".jpg", ".png", ".webp")) for m in tar.getmembers())
    return count


def run_ours(parquet: Path, out: Path, threads: int) -> tuple[int, float, float]:
    command = [
        sys.executable, "-m", "pipelines.cli", "pairs", "--input", str(parquet), "--output", str(out),
        "--allow-network", "127.0.0.1/32", "--set", "score_clip=false", "--set", "filters.nsfw=null",
        "--set", f"download.concurrency={threads}", "--set", "download.batch_size=256",
        "--set", "image.reencode=keep",
        "--set", "filters.image.min_side=64", "--set", "filters.image.max_aspect=3.0",
        "--runner=DirectRunner", "--no-report",
    ]
    wall, cpu = _timed(command)
    kept = json.loads((out / "manifest.json").read_text())["totals"]["samples"]
    return kept, wall, cpu


def run_img2dataset(python: str, parquet: Path, out: Path, threads: int) -> tuple[int, float, float]:
    script = (
        "if __name__ == '__main__':\n"
        "    from img2dataset import download\n"
        f"    download(url_list={str(parquet)!r}, input_format='parquet', url_col='URL', caption_col='TEXT',\n"
        f"             output_folder={str(out)!r}, output_format='webdataset', processes_count=1,\n"
        f"             thread_count={threads}, resize_mode='no', skip_reencode=True, min_image_size=64,\n"
        "             max_aspect_ratio=3.0, number_sample_per_shard=10000, timeout=10, retries=0,\n"
        "             enable_wandb=False, distributor='multiprocessing')\n"
    )
    wall, cpu = _timed([python, "-c", script])
    return _count_images(out), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--img2dataset-python", default=str(ROOT / "bench-out" / "img2dataset-venv" / "bin" / "python"))
    args = parser.parse_args()

    from sampledata.pairs import SampleCase, make_url_list, write_pairs_parquet

    queue: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(queue, stop), daemon=True)
    server.start()
    base_url = queue.get(timeout=60)
    urls = make_url_list(base_url, args.images)
    sizes = {"small": max(args.images // 10, 1), "full": args.images}
    tools = {
        "img2dataset (baseline)": lambda parquet, out: run_img2dataset(args.img2dataset_python, parquet, out, args.threads),
        "curate pairs (no CLIP)": lambda parquet, out: run_ours(parquet, out, args.threads),
    }
    runs: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            inputs = {}
            for size, count in sizes.items():
                cases = [SampleCase(url=u, text=f"A benchmark photograph number {i}", expect="ok")
                         for i, u in enumerate(urls[:count])]
                inputs[size] = work / f"{size}.parquet"
                write_pairs_parquet(cases, str(inputs[size]), rows_per_group=max(count // 8, 1))
            _warm(urls)
            for repeat in range(args.repeats):
                for size in sizes:
                    for index, (name, run) in enumerate(tools.items()):
                        out = work / f"out-{repeat}-{size}-{index}"
                        runs.setdefault((name, size), []).append(run(inputs[size], out))
    finally:
        stop.set()
        server.join(timeout=10)

    def median(name: str, size: str) -> tuple[int, float, float]:
        done = runs[(name, size)]
        return done[0][0], statistics.median(r[1] for r in done), statistics.median(r[2] for r in done)

    print(f"\n{sizes['full']} URLs (and {sizes['small']} for the marginal rate) of 512x384 JPEGs on a loopback server, "
          f"{os.cpu_count()} cores, {args.threads} threads, median of {args.repeats} run(s)\n")
    print("| tool | images kept | wall s | images/s | CPU s | images per CPU-second (per core), whole run "
          f"| CPU s for {sizes['small']} | images per CPU-second, marginal |")
    print("|---|---|---|---|---|---|---|---|")
    rates = {}
    for name in tools:
        kept, wall, cpu = median(name, "full")
        small_kept, _, small_cpu = median(name, "small")
        marginal = (kept - small_kept) / (cpu - small_cpu) if cpu > small_cpu else float("nan")
        rates[name] = (kept / cpu, marginal)
        print(f"| {name} | {kept} | {wall:.1f} | {kept / wall:.0f} | {cpu:.1f} | {kept / cpu:.0f} | {small_cpu:.1f} "
              f"| {marginal:.0f} |")
    ours, base = rates["curate pairs (no CLIP)"], rates["img2dataset (baseline)"]
    print(f"\nper-core ratio (ours / img2dataset): whole run {ours[0] / base[0]:.2f}, marginal {ours[1] / base[1]:.2f}")


if __name__ == "__main__":
    main()
