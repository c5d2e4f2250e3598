"""Scaling and packing cost of MST packing (``synth.packing``) next to In-Context Pretraining's
greedy walk, on clustered 384-d embeddings.

    python bench/bench_mst.py [--sizes 10000 100000 1000000 10000000] [--seq-len 8192]
                              [--methods pack cut greedy] [--workers 2] [--partition-docs 200000]

Embeddings: about 1000 gaussian topics (sizes log-normal, spreads varied, topic
centres grouped into 50 themes), float32, unit length, written to disk block by
block and read back in blocks, so ten million (15 GB) fit a small machine; token
counts log-normal (median ~550, mean ~900, clipped to 16..32768).

Each method runs in its own child process the way ``curate text`` runs: centroids fit
on 20k documents, every document assigned to its nearest (partitions of at most about
``--partition-docs``), the partitions written to their own files (Beam's group by
key), packed by ``--workers`` worker processes, and the partitions' part-filled
last sequences packed together at the end. Methods: ``pack`` is the MST walk packed
best fit (``curate text``'s default), ``cut`` the MST walk cut at sequence boundaries
(``packing.cut_at_boundaries``), ``greedy`` In-Context Pretraining's greedy walk
packed best fit like ``pack``. Time is the child's wall time from partitioning to
the last sequence; peak memory is an upper bound: the child's peak RSS plus
``--workers`` times the largest worker's. Fill counts separators as used; padding
is the rest of every sequence; similarity is the mean cosine similarity of
consecutive documents inside the packed sequences.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 384
BLOCK = 65_536
CENTROID_SAMPLE = 20_000
TARGET_GROWTH = 1.1
TARGET_SECONDS = 15 * 60
TARGET_BYTES = 8 * 10**9
TARGET_FILL = 0.99


def write_embeddings(path: Path, n: int, dim: int = DIM, topics: int = 1000, seed: int = 0) -> np.ndarray:
    """Writes ``[n, dim]`` clustered unit float32 embeddings to ``path`` (``.npy``); returns token counts."""
    rng = np.random.default_rng(seed)
    themes = rng.standard_normal((50, dim)).astype(np.float32)
    themes /= np.linalg.norm(themes, axis=1, keepdims=True)
    centres = themes[rng.integers(0, 50, topics)] + rng.standard_normal((topics, dim), dtype=np.float32) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 1.0, topics)
    label = rng.choice(topics, n, p=weights / weights.sum())
    spread = rng.uniform(0.4, 1.4, topics).astype(np.float32) / np.sqrt(dim)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, BLOCK):
        part = label[start : start + BLOCK]
        block = rng.standard_normal((len(part), dim), dtype=np.float32) * spread[part, None] + centres[part]
        out[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        out.flush()
    del out
    return np.clip(rng.lognormal(6.3, 1.0, n), 16, 32768).astype(np.int64)


def read_rows(path: Path, start: int, count: int) -> np.ndarray:
    """Rows ``[start, start + count)`` of an ``.npy`` float32 matrix, read from disk (the map
    only gives the layout: reading through it would count the file's pages in the peak RSS)."""
    layout = np.load(path, mmap_mode="r")
    dim = layout.shape[1]
    offset = layout.offset + start * dim * 4
    del layout
    return np.fromfile(path, dtype=np.float32, count=count * dim, offset=offset).reshape(-1, dim)


def partition(work: Path, n: int, partition_docs: int) -> list[tuple[Path, np.ndarray]]:
    """Assigns every document to a k-means partition and writes each partition's rows to a file.

    Returns ``(rows file, document ids)`` per partition, largest first.
    """
    from synth.partition import assign, partition_centroids

    embeddings = work / "embeddings.npy"
    parts = work / "parts"
    parts.mkdir(exist_ok=True)
    centroids = partition_centroids(read_rows(embeddings, 0, min(n, CENTROID_SAMPLE)), n, partition_docs, seed=0)
    count = len(centroids)
    labels = np.empty(n, dtype=np.int32)
    handles = [open(parts / f"{p}.f32", "wb") for p in range(count)]
    for start in range(0, n, BLOCK):
        rows = read_rows(embeddings, start, min(BLOCK, n - start))
        block = assign(rows, centroids)
        labels[start : start + len(rows)] = block
        for p in np.unique(block).tolist():
            rows[block == p].tofile(handles[p])
    for handle in handles:
        handle.close()
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    found = [(parts / f"{p}.f32", order[bounds[p] : bounds[p + 1]]) for p in range(count)]
    return sorted((part for part in found if len(part[1])), key=lambda part: -len(part[1]))


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux ``VmHWM``). Not ``ru_maxrss``:
    that survives ``exec``, so the child would report the peak of the parent that wrote the
    embeddings through a memory map."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def pack_one(task: tuple[int, str, Path, np.ndarray, np.ndarray, int]) -> dict:
    """Packs one partition; returns its full sequences' costs and its last sequence (global ids)."""
    from synth.knn import normalized
    from synth.packing import greedy_walk_order, order_sequence, pack_ordered, pack_partition

    index, method, rows_path, ids, tokens, seq_len = task
    x = np.fromfile(rows_path, dtype=np.float32).reshape(-1, DIM)
    if method == "greedy":
        walk = greedy_walk_order(x, seed=0)
        unit = normalized(x)
        sequences = [
            order_sequence(sequence, unit)
            for sequence in pack_ordered([(d, 0, int(tokens[d])) for d in walk], seq_len)
        ]
    else:
        sequences = pack_partition(x, tokens, seq_len=seq_len, cut=method == "cut", seed=0)
        unit = normalized(x)
    cost = sequence_costs(sequences[:-1], unit, tokens, seq_len)
    cost["last"] = [(int(ids[d]), start, end) for d, start, end in sequences[-1]]
    cost["index"] = index
    cost["max_rss"] = peak_rss()
    return cost


def sequence_costs(sequences: list, unit: np.ndarray, tokens: np.ndarray, seq_len: int) -> dict:
    """Sums over ``sequences``: sequences, tokens (separators included), pieces, documents starting,
    documents split, those of them shorter than a sequence, adjacent similarity and pairs."""
    from synth.packing import neighbour_similarities

    cost = dict.fromkeys(("sequences", "tokens", "starts", "split", "short_split", "pairs"), 0)
    cost["similarity"] = 0.0
    for sequence in sequences:
        cost["sequences"] += 1
        for doc, start, end in sequence:
            cost["tokens"] += end - start + 1
            if start == 0:
                cost["starts"] += 1
                if end < tokens[doc]:
                    cost["split"] += 1
                    cost["short_split"] += int(tokens[doc]) + 1 <= seq_len
        similarities = neighbour_similarities(sequence, unit)
        cost["pairs"] += len(similarities)
        cost["similarity"] += sum(similarities)
    return cost


def child(method: str, work: Path, seq_len: int, workers: int, partition_docs: int) -> None:
    """Runs one method on ``work``'s inputs and writes its measurements there."""
    from synth.packing import complete_sequences

    tokens = np.load(work / "tokens.npy")
    n = len(tokens)
    start, cpu = time.perf_counter(), time.process_time()
    parts = partition(work, n, partition_docs)
    tasks = [(index, method, path, ids, tokens[ids], seq_len) for index, (path, ids) in enumerate(parts)]
    with get_context("fork").Pool(workers) as pool:
        results = list(pool.imap_unordered(pack_one, tasks))
    results.sort(key=lambda result: result["index"])
    last = [piece for result in results for piece in result["last"]]
    ids = np.array([doc for doc, _, _ in last], dtype=np.int64)
    rows = np.stack([read_rows(work / "embeddings.npy", int(doc), 1)[0] for doc in ids.tolist()])
    completed = complete_sequences(
        [(i, s, e) for i, (_, s, e) in enumerate(last)], rows, seq_len, cut=method == "cut"
    )
    seconds = time.perf_counter() - start
    total = sequence_costs(completed, rows / np.linalg.norm(rows, axis=1, keepdims=True), tokens[ids], seq_len)
    for result in results:
        for key in total:
            total[key] += result[key]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total.update(
        seconds=seconds,
        cpu=time.process_time() - cpu + children.ru_utime + children.ru_stime,
        max_rss=peak_rss() + workers * max(r["max_rss"] for r in results),
        partitions=len(parts),
    )
    shutil.rmtree(work / "parts")
    (work / f"{method}.json").write_text(json.dumps(total))


def run_child(method: str, work: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", method, "--work", str(work), "--seq-len", str(args.seq_len),
               "--workers", str(args.workers), "--partition-docs", str(args.partition_docs)]
    # one BLAS thread per process: the kNN search already runs a thread per core
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{method} child failed: {done.stderr[-3000:]}")
    return json.loads((work / f"{method}.json").read_text())


def measure(n: int, args: argparse.Namespace, tmp: Path) -> dict:
    work = tmp / str(n)
    work.mkdir()
    tokens = write_embeddings(work / "embeddings.npy", n)
    np.save(work / "tokens.npy", tokens)
    row: dict = {"n": n, "tokens": int(tokens.sum())}
    for method in args.methods:
        row[method] = result = run_child(method, work, args)
        assert result["starts"] == n, f"{method}: {result['starts']} documents placed of {n}"
        print(f"n={n}: {method} {result['seconds']:.1f}s", file=sys.stderr, flush=True)
    sample = read_rows(work / "embeddings.npy", 0, min(n, 200_000))  # rows are in random order
    row["random_sim"] = float(np.einsum("ij,ij->", sample[:-1], sample[1:], dtype=np.float64)) / (len(sample) - 1)
    shutil.rmtree(work)
    return row


def cells(result: dict | None, seq_len: int) -> str:
    if result is None:
        return "| – " * 8
    capacity = result["sequences"] * seq_len
    return (
        f"| {result['seconds']:.1f} | {result['cpu']:.1f} | {result['max_rss'] / 1e9:.2f} "
        f"| {result['tokens'] / capacity:.4f} | {capacity - result['tokens']:,} "
        f"| {result['split']:,} ({result['short_split']}) | {result['similarity'] / max(result['pairs'], 1):.3f} "
        f"| {result['sequences']:,} "
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--methods", nargs="+", choices=["pack", "cut", "greedy"], default=["pack", "cut", "greedy"])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--partition-docs", type=int, default=200_000, help="packing.max_partition_docs")
    parser.add_argument("--tmp", type=Path, default=None, help="where the embeddings are written")
    parser.add_argument("--child", choices=["pack", "cut", "greedy"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work, args.seq_len, args.workers, args.partition_docs)
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in sorted(args.sizes):
            rows.append(measure(n, args, Path(tmp)))

    print(f"\n384-d clustered embeddings (~1000 topics), seq_len {args.seq_len}, {os.cpu_count()} cores, "
          f"{args.workers} workers, partitions of ~{args.partition_docs:,} documents\n")
    print("| docs | method | partitions | s | CPU s | peak GB | growth | fill | padding tokens "
          "| docs split (shorter than a sequence) | sim in sequences | sequences |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    growths = {}
    for method in args.methods:
        previous = None
        for row in rows:
            result = row[method]
            growth = "–"
            if previous is not None:
                slope = math.log(result["seconds"] / previous[method]["seconds"]) / math.log(row["n"] / previous["n"])
                growths[(method, previous["n"], row["n"])] = slope
                growth = f"N^{slope:.2f}"
            fields = cells(result, args.seq_len).split("|")[1:]
            print(f"| {row['n']:,} | {method} | {result['partitions']} |{fields[0]}|{fields[1]}|{fields[2]}| {growth} |"
                  + "|".join(fields[3:]) + "|")
            previous = row
    print("\nrandom order sim: " + ", ".join(f"{row['n']:,}: {row['random_sim']:.3f}" for row in rows))

    print("\nTargets (pack):")
    if "pack" in args.methods:
        for (method, small, large), slope in growths.items():
            if method == "pack" and small >= 1_000_000:
                verdict = "met" if slope <= TARGET_GROWTH else "MISSED"
                print(f"- growth {small:,} -> {large:,} <= N^{TARGET_GROWTH}: N^{slope:.2f} -> {verdict}")
        for row in rows:
            result = row["pack"]
            fill = result["tokens"] / (result["sequences"] * args.seq_len)
            print(f"- {row['n']:,}: fill {fill:.4f} >= {TARGET_FILL} -> {'met' if fill >= TARGET_FILL else 'MISSED'}; "
                  f"documents shorter than a sequence split: {result['short_split']}")
            if "greedy" in args.methods:
                ours = result["similarity"] / result["pairs"]
                theirs = row["greedy"]["similarity"] / row["greedy"]["pairs"]
                print(f"  similarity {ours:.3f} > greedy walk's {theirs:.3f} -> {'met' if ours > theirs else 'MISSED'}")
        largest = rows[-1]
        if largest["n"] >= 10_000_000:
            seconds, peak = largest["pack"]["seconds"], largest["pack"]["max_rss"]
            print(f"- {largest['n']:,} docs < 15 min: {seconds / 60:.1f} min -> "
                  f"{'met' if seconds < TARGET_SECONDS else 'MISSED'}")
            print(f"- {largest['n']:,} docs < 8 GB: {peak / 1e9:.2f} GB -> {'met' if peak < TARGET_BYTES else 'MISSED'}")
        else:
            print("- 10M docs < 15 min and < 8 GB: not run (add 10000000 to --sizes)")


if __name__ == "__main__":
    main()
