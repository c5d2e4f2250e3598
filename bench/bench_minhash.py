"""MinHash signatures/s per core of `curation.minhash.signature` next to datasketch,
and a check that both make the same signatures, LSH buckets and duplicate decisions.

    python bench/bench_minhash.py [--docs 400] [--repeats 5]

Every tool turns the same generated web-like texts (100 to 2,000 words) into a
112-value signature (14 bands x 8 rows, word 5-gram shingles of
``normalize_for_dedup``). datasketch gets its favourable setup: the legacy
scheme our signatures reproduce, permutations drawn once and passed to every
``MinHash``, its default ``sha1_hash32`` on the UTF-8 n-grams; one more row
feeds it our shingle hashes instead, isolating the permutation step. Throughput
is signatures per CPU-second of this process (best of ``--repeats`` rounds
that interleave the tools ten texts at a time), so it is per core and each tool
sees the same load from whatever else runs on the machine.

The check gives datasketch our shingle hash (``hashfunc``) on a corpus with
planted near duplicates and asserts equal signatures, equal
``MinHashLSH(params=(14, 8))`` buckets against ``band_keys``, and equal
verified pairs and dropped documents.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict
from collections.abc import Callable

import datasketch
import numpy as np

from curation.greedy_dedup import resolve_in_order
from curation.minhash import (
    MinHashSettings,
    SignatureSimilarity,
    band_keys,
    estimated_jaccard,
    normalize_for_dedup,
    shingles,
    signature,
)

SETTINGS = MinHashSettings()
_PUNCTUATION = np.array([",", ",", ";", ":", "", "", "", "", "", ""])
_ENDS = np.array([".", ".", ".", "?", "!"])


def _vocabulary(rng: np.random.Generator, size: int = 20000) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzéü"))
    return np.array(["".join(rng.choice(letters, size=rng.integers(2, 11))) for _ in range(size)])


def _text(rng: np.random.Generator, vocab: np.ndarray, words: int) -> str:
    """Zipf-distributed words in capitalised sentences of 5 to 25 words, with punctuation."""
    picks = vocab[np.minimum(rng.zipf(1.2, size=words), vocab.size) - 1]
    picks = [w + p for w, p in zip(picks, rng.choice(_PUNCTUATION, size=words))]
    sentences, start = [], 0
    while start < words:
        end = start + int(rng.integers(5, 26))
        sentence = picks[start:end]
        sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]).rstrip(",;:") + rng.choice(_ENDS))
        start = end
    return " ".join(sentences)


def _corpus(docs: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    return [_text(rng, vocab, int(rng.integers(100, 2001))) for _ in range(docs)]


def _ngrams(text: str) -> list[bytes]:
    """The word n-grams as datasketch users feed them: the same words, joined and encoded."""
    words = normalize_for_dedup(text).split()
    n = min(SETTINGS.ngram, len(words))
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def _top32(h: int) -> int:
    return h >> 32


def _datasketch(texts: list[str], update: str, our_hashes: bool) -> list[np.ndarray]:
    template = datasketch.MinHash(num_perm=SETTINGS.num_perm, seed=SETTINGS.seed, scheme="legacy")
    kwargs = {"num_perm": SETTINGS.num_perm, "scheme": "legacy", "permutations": template.permutations}
    out = []
    for text in texts:
        if our_hashes:
            sketch = datasketch.MinHash(hashfunc=_top32, **kwargs)
            values = [int(h) for h in shingles(text, SETTINGS.ngram)]
        else:
            sketch = datasketch.MinHash(**kwargs)
            values = _ngrams(text)
        if update == "batch":
            sketch.update_batch(values)
        else:
            for value in values:
                sketch.update(value)
        out.append(sketch.hashvalues)
    return out


def _ours(texts: list[str]) -> list[np.ndarray]:
    return [signature(text, SETTINGS) for text in texts]


def _rates(runs: list[Callable[[list[str]], list[np.ndarray]]], texts: list[str], repeats: int) -> list[float]:
    """Signatures per CPU-second of each run, best of ``repeats`` rounds.

    Each round takes the texts ten at a time and gives each batch to every run
    in turn, so load from other processes falls on all runs alike.
    """
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        spent = [0.0] * len(runs)
        for start in range(0, len(texts), 10):
            for i, run in enumerate(runs):
                clock = time.process_time()
                run(texts[start : start + 10])
                spent[i] += time.process_time() - clock
        best = [min(b, s) for b, s in zip(best, spent)]
    return [len(texts) / seconds for seconds in best]


def _edited(text: str, rng: np.random.Generator, share: float) -> str:
    """A copy with about ``share`` of its words replaced in runs of 8."""
    words = text.split()
    for start in rng.choice(len(words), size=max(1, int(len(words) * share / 8)), replace=False):
        words[start : start + 8] = rng.choice(words, size=len(words[start : start + 8])).tolist()
    return " ".join(words)


def _planted(texts: list[str], seed: int = 1) -> dict[str, str]:
    """The texts, with near copies (1% to 60% of the words edited) of a third of them, by id."""
    rng = np.random.default_rng(seed)
    corpus = {f"doc{i:05d}": text for i, text in enumerate(texts)}
    for i, text in enumerate(texts[: len(texts) // 3]):
        for j, share in enumerate(rng.choice([0.0, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6], size=2)):
            corpus[f"doc{i:05d}-near{j}"] = _edited(text, rng, share) if share else text.upper()
    corpus["empty-a"], corpus["empty-b"] = "", " ... "
    return corpus


def _our_buckets(sigs: dict[str, np.ndarray]) -> dict[bytes, set[str]]:
    buckets: dict[bytes, set[str]] = defaultdict(set)
    for doc_id, sig in sigs.items():
        for key in band_keys(sig, SETTINGS):
            buckets[key].add(doc_id)
    return buckets


def _partition(buckets: list[set[str]]) -> set[frozenset[str]]:
    return {frozenset(members) for members in buckets}


def _dropped(buckets: list[set[str]], sigs: dict[str, np.ndarray]) -> set[str]:
    """The pipeline's rule (:mod:`curation.greedy_dedup`): in id order, every id that is a
    verified near duplicate of a kept id it shares a bucket with."""
    settled = resolve_in_order(
        [[(m, sigs[m], None) for m in members] for members in buckets], SignatureSimilarity(SETTINGS.threshold)
    )
    return {doc_id for doc_id, kept in settled if not kept}


def check_identical(texts: list[str]) -> dict[str, int]:
    """Asserts datasketch given our shingle hash decides exactly as we do; returns counts."""
    corpus = _planted(texts)
    ours = dict(zip(corpus, _ours(list(corpus.values()))))
    theirs = dict(zip(corpus, _datasketch(list(corpus.values()), "batch", our_hashes=True)))
    assert all(np.array_equal(ours[i], theirs[i]) for i in corpus), "signatures differ"

    lsh = datasketch.MinHashLSH(num_perm=SETTINGS.num_perm, params=(SETTINGS.bands, SETTINGS.rows))
    sketches = {
        i: datasketch.MinHash(hashvalues=h, seed=SETTINGS.seed, scheme="legacy") for i, h in theirs.items()
    }
    for doc_id, sketch in sketches.items():
        lsh.insert(doc_id, sketch)
    our_buckets = _our_buckets(ours)
    for band, table in enumerate(lsh.hashtables):
        their_band = _partition([table.get(key) for key in table.keys()])
        our_band = _partition([m for key, m in our_buckets.items() if key[0] == band])
        assert their_band == our_band, f"band {band}: buckets differ"

    their_pairs = {tuple(sorted((i, j))) for i in corpus for j in lsh.query(sketches[i]) if i != j}
    our_pairs = {pair for m in our_buckets.values() for pair in itertools.combinations(sorted(m), 2)}
    assert their_pairs == our_pairs, "LSH candidate pairs differ"
    their_verified = {p for p in their_pairs if sketches[p[0]].jaccard(sketches[p[1]]) >= SETTINGS.threshold}
    our_verified = {p for p in our_pairs if estimated_jaccard(ours[p[0]], ours[p[1]]) >= SETTINGS.threshold}
    assert their_verified == our_verified, "verified pairs differ"
    their_buckets = [table.get(key) for table in lsh.hashtables for key in table.keys()]
    dropped = _dropped(list(our_buckets.values()), ours)
    assert _dropped(their_buckets, theirs) == dropped, "dropped documents differ"
    return {
        "documents": len(corpus),
        "candidate pairs": len(our_pairs),
        "verified pairs": len(our_verified),
        "dropped": len(dropped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    texts = _corpus(args.docs)
    words = np.mean([len(t.split()) for t in texts])
    counts = check_identical(texts)
    print(f"\nidentical signatures, LSH buckets and duplicate decisions: {counts}")

    rows = [
        ("curation.minhash.signature", _ours),
        ("datasketch MinHash.update, one call per shingle", lambda t: _datasketch(t, "single", False)),
        ("datasketch MinHash.update_batch", lambda t: _datasketch(t, "batch", False)),
        ("datasketch MinHash.update_batch, our shingle hashes", lambda t: _datasketch(t, "batch", True)),
    ]
    rates = list(zip([name for name, _ in rows], _rates([run for _, run in rows], texts, args.repeats)))
    ours = rates[0][1]
    print(f"\n{len(texts)} texts, {words:.0f} words on average, {SETTINGS.bands} x {SETTINGS.rows} = "
          f"{SETTINGS.num_perm} permutations, word {SETTINGS.ngram}-grams\n")
    print("| implementation | signatures per CPU-second (per core) | ours / this |")
    print("|---|---|---|")
    for name, rate in rates:
        print(f"| {name} | {rate:.0f} | {ours / rate:.2f}x |")


if __name__ == "__main__":
    main()
