"""Images/s per core of `curate pairs` (fetch + normalise + filters + shards; CLIP, the NSFW
model and the report aside, as img2dataset has none of them)
next to img2dataset downloading the same URL list from the same loopback server.

    python bench/bench_pairs.py [--images 3000] [--threads 32]

The image server runs in its own process; each tool runs in a child process so its
CPU time can be measured (``RUSAGE_CHILDREN``). "Per core" is images per CPU-second
of the tool's processes, which is fair even though the server shares the machine.
img2dataset runs from its own virtualenv (``--img2dataset-python``, made by
``make bench``) because its pins clash with this project's; both tools keep the
original bytes (no resize), apply a 64 px minimum side and a 3:1 aspect cap, and
write webdataset tars.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Runs a child process; returns (wall seconds, CPU seconds, stderr tail)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr[-2000:]}")
    return wall, cpu, done.stderr[-500:]


def _count_images(directory: Path) -> int:
    count = 0
    for path in directory.rglob("*.tar"):
        with tarfile.open(path) as tar:
            count += sum(m.name.endswith((".jpg", ".png", ".webp")) for m in tar.getmembers())
    return count


def run_ours(urls: list[str], work: Path, threads: int) -> tuple[int, float, float]:
    from sampledata.pairs import SampleCase, write_pairs_parquet

    cases = [SampleCase(url=u, text=f"A benchmark photograph number {i}", expect="ok") for i, u in enumerate(urls)]
    parquet = work / "ours-input.parquet"
    write_pairs_parquet(cases, str(parquet), rows_per_group=max(len(urls) // 8, 1))
    out = work / "ours-out"
    command = [
        sys.executable, "-m", "pipelines.cli", "pairs", "--input", str(parquet), "--output", str(out),
        "--allow-network", "127.0.0.1/32", "--set", "score_clip=false", "--set", "filters.nsfw=null",
        "--set", f"download.concurrency={threads}", "--set", "download.batch_size=256",
        "--set", "filters.image.min_side=64", "--set", "filters.image.max_aspect=3.0",
        "--runner=DirectRunner", "--no-report",
    ]
    wall, cpu, _ = _timed(command, dict(os.environ))
    kept = json.loads((out / "manifest.json").read_text())["totals"]["samples"]
    return kept, wall, cpu


def run_img2dataset(python: str, urls: list[str], work: Path, threads: int) -> tuple[int, float, float]:
    url_file = work / "urls.txt"
    url_file.write_text("\n".join(urls) + "\n")
    out = work / "img2dataset-out"
    script = (
        "if __name__ == '__main__':\n"
        "    from img2dataset import download\n"
        f"    download(url_list={str(url_file)!r}, input_format='txt', output_folder={str(out)!r},\n"
        f"             output_format='webdataset', processes_count=1, thread_count={threads},\n"
        "             resize_mode='no', min_image_size=64, max_aspect_ratio=3.0, number_sample_per_shard=10000,\n"
        "             timeout=10, retries=0, enable_wandb=False, distributor='multiprocessing')\n"
    )
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", no_proxy="127.0.0.1,localhost")
    wall, cpu, _ = _timed([python, "-c", script], env)
    return _count_images(out), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--img2dataset-python", default=str(ROOT / "bench-out" / "img2dataset-venv" / "bin" / "python"))
    args = parser.parse_args()

    from sampledata.pairs import make_url_list

    queue: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(queue, stop), daemon=True)
    server.start()
    base_url = queue.get(timeout=60)
    urls = make_url_list(base_url, args.images)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _warm(urls)
            rows.append(("img2dataset (baseline)", *run_img2dataset(args.img2dataset_python, urls, work, args.threads)))
            rows.append(("curate pairs (no CLIP)", *run_ours(urls, work, args.threads)))
    finally:
        stop.set()
        server.join(timeout=10)

    print(f"\n{len(urls)} URLs of 512x384 JPEGs on a loopback server, {os.cpu_count()} cores, {args.threads} threads\n")
    print("| tool | images kept | wall s | images/s | CPU s | images per CPU-second (per core) |")
    print("|---|---|---|---|---|---|")
    for name, kept, wall, cpu in rows:
        print(f"| {name} | {kept} | {wall:.1f} | {kept / wall:.0f} | {cpu:.1f} | {kept / cpu:.0f} |")
    ours, base = rows[1], rows[0]
    print(f"\nper-core ratio (ours / img2dataset): {(ours[1] / ours[3]) / (base[1] / base[3]):.2f}")


if __name__ == "__main__":
    main()
