"""Scaling of MST packing (``synth.packing.pack_corpus``) next to In-Context Pretraining's
greedy walk, on clustered 384-d embeddings.

    python bench/bench_mst.py [--sizes 10000 100000 1000000] [--seq-len 8192]

Embeddings: about 1000 gaussian topics (sizes log-normal, spreads varied, topic
centres grouped into 50 themes), float32, unit length; token counts log-normal
(median ~550, mean ~900, clipped to 16..32768). Each method runs in its own child
process on the same embeddings, so its peak memory is the child's ``ru_maxrss``
(embeddings loaded included) and its time is the call alone. Similarity is the
mean cosine similarity of consecutive documents inside the packed sequences
(both orders packed by ``pack_sequences`` with the same settings), which is what
a training sequence sees; the greedy walk's whole-order value is shown too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_GROWTH = 1.15
TARGET_1M_SECONDS = 15 * 60
TARGET_1M_BYTES = 8 * 10**9


def write_embeddings(path: Path, n: int, dim: int = 384, topics: int = 1000, seed: int = 0) -> np.ndarray:
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
    for start in range(0, n, 65_536):
        part = label[start : start + 65_536]
        block = rng.standard_normal((len(part), dim), dtype=np.float32) * spread[part, None] + centres[part]
        out[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()
    return np.clip(rng.lognormal(6.3, 1.0, n), 16, 32768).astype(np.int64)


def child(method: str, work: Path, seq_len: int) -> None:
    """Runs one method on ``work``'s inputs and writes its output and measurements there."""
    from synth.packing import greedy_walk_order, pack_corpus

    x = np.load(work / "embeddings.npy")
    tokens = np.load(work / "tokens.npy")
    start, cpu = time.perf_counter(), time.process_time()
    if method == "pack":
        sequences = pack_corpus(x, tokens, seq_len=seq_len, seed=0)
        docs = [d for sequence in sequences for d, _, _ in sequence]
        lengths = [len(sequence) for sequence in sequences]
        result = {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}
        np.save(work / "pack_docs.npy", np.asarray(docs, dtype=np.int64))
        np.save(work / "pack_lengths.npy", np.asarray(lengths, dtype=np.int64))
    else:
        order = greedy_walk_order(x, seed=0)
        result = {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}
        np.save(work / "greedy_order.npy", np.asarray(order, dtype=np.int64))
    result["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    (work / f"{method}.json").write_text(json.dumps(result))


def run_child(method: str, work: Path, seq_len: int) -> dict:
    command = [sys.executable, __file__, "--child", method, "--work", str(work), "--seq-len", str(seq_len)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} child failed: {done.stderr[-3000:]}")
    return json.loads((work / f"{method}.json").read_text())


def in_sequence_similarity(docs: np.ndarray, lengths: np.ndarray, x: np.ndarray) -> float:
    """Mean cosine similarity of consecutive items of the same sequence (flattened input)."""
    same = np.ones(len(docs) - 1, dtype=bool)
    same[np.cumsum(lengths)[:-1] - 1] = False
    left, right = docs[:-1][same], docs[1:][same]
    total = 0.0
    for start in range(0, len(left), 65_536):
        a, b = x[left[start : start + 65_536]], x[right[start : start + 65_536]]
        total += float(np.einsum("ij,ij->", a, b, dtype=np.float64))
    return total / max(len(left), 1)


def measure(n: int, seq_len: int, tmp: Path) -> dict:
    from synth.packing import adjacent_similarity, pack_sequences

    work = tmp / str(n)
    work.mkdir()
    tokens = write_embeddings(work / "embeddings.npy", n)
    np.save(work / "tokens.npy", tokens)
    pack = run_child("pack", work, seq_len)
    greedy = run_child("greedy", work, seq_len)
    x = np.load(work / "embeddings.npy", mmap_mode="r")
    docs, lengths = np.load(work / "pack_docs.npy"), np.load(work / "pack_lengths.npy")
    order = np.load(work / "greedy_order.npy")
    greedy_sequences = pack_sequences(order, tokens, seq_len)
    greedy_docs = np.asarray([d for s in greedy_sequences for d, _, _ in s])
    greedy_lengths = np.asarray([len(s) for s in greedy_sequences])
    random_order = np.random.default_rng(1).permutation(n)
    return {
        "n": n,
        "pack": pack,
        "greedy": greedy,
        "sim": in_sequence_similarity(docs, lengths, x),
        "greedy_sim": in_sequence_similarity(greedy_docs, greedy_lengths, x),
        "greedy_walk_sim": adjacent_similarity(order, x),
        "random_sim": adjacent_similarity(random_order, x),
        "sequences": len(lengths),
        "fill": (int(tokens.sum()) + len(docs)) / (len(lengths) * seq_len),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--child", choices=["pack", "greedy"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work, args.seq_len)
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            rows.append(measure(n, args.seq_len, Path(tmp)))
            row = rows[-1]
            print(f"n={n}: pack {row['pack']['seconds']:.1f}s, greedy {row['greedy']['seconds']:.1f}s", file=sys.stderr, flush=True)

    print(f"\n384-d clustered embeddings (~1000 topics), seq_len {args.seq_len}, {os.cpu_count()} cores\n")
    print(
        "| docs | pack_corpus s | CPU s | peak RSS GB | growth | sim in sequences | greedy sim in sequences "
        "| greedy whole walk | random | greedy s | greedy peak GB | sequences | fill |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    growths = []
    for previous, row in zip([None, *rows], rows):
        growth = "–"
        if previous is not None:
            slope = math.log(row["pack"]["seconds"] / previous["pack"]["seconds"]) / math.log(row["n"] / previous["n"])
            growths.append(slope)
            growth = f"N^{slope:.2f}"
        pack, greedy = row["pack"], row["greedy"]
        print(
            f"| {row['n']:,} | {pack['seconds']:.1f} | {pack['cpu']:.1f} | {pack['max_rss'] / 1e9:.2f} | {growth} "
            f"| {row['sim']:.3f} | {row['greedy_sim']:.3f} | {row['greedy_walk_sim']:.3f} | {row['random_sim']:.3f} "
            f"| {greedy['seconds']:.1f} | {greedy['max_rss'] / 1e9:.2f} | {row['sequences']:,} | {row['fill']:.3f} |"
        )

    print("\nTargets:")
    if growths:
        worst = max(growths)
        print(f"- growth <= N^{TARGET_GROWTH}: worst N^{worst:.2f} -> {'met' if worst <= TARGET_GROWTH else 'MISSED'}")
    million = next((row for row in rows if row["n"] == 1_000_000), None)
    if million:
        seconds, peak = million["pack"]["seconds"], million["pack"]["max_rss"]
        print(f"- 1M docs < 15 min: {seconds / 60:.1f} min -> {'met' if seconds < TARGET_1M_SECONDS else 'MISSED'}")
        print(f"- 1M docs < 8 GB: {peak / 1e9:.2f} GB -> {'met' if peak < TARGET_1M_BYTES else 'MISSED'}")
    else:
        print("- 1M docs < 15 min and < 8 GB: not run (add 1000000 to --sizes)")
    beaten = all(row["sim"] >= row["greedy_sim"] for row in rows)
    print(f"- similarity >= greedy walk's at every size: {'met' if beaten else 'MISSED'}")


if __name__ == "__main__":
    main()
