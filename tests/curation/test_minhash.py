import itertools
import os
import subprocess
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

import datasketch
import numpy as np
import pytest

from curation.greedy_dedup import resolve_in_order
from curation.minhash import (
    MinHashSettings,
    SignatureSimilarity,
    band_keys,
    duplicates_in_bucket,
    estimated_jaccard,
    normalize_for_dedup,
    shingles,
    signature,
)
from curation.minhash import _permute_min

SETTINGS = MinHashSettings()
REPO = Path(__file__).resolve().parents[2]
PRIME = (1 << 61) - 1
MASK64 = (1 << 64) - 1


def _vocabulary(seed: int = 0, size: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(sorted({"".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(size)}))


VOCAB = _vocabulary()


def _document(rng: np.random.Generator, words: int) -> list[str]:
    return rng.choice(VOCAB, size=words).tolist()


def _edited(words: list[str], rng: np.random.Generator, runs: int, run_length: int = 10) -> list[str]:
    """A copy with ``runs`` non-overlapping runs of words replaced, each followed by an intact stretch."""
    out = list(words)
    slots = rng.choice(len(words) // (2 * run_length), size=runs, replace=False)
    for slot in slots:
        start = int(slot) * 2 * run_length
        out[start : start + run_length] = rng.choice(VOCAB, size=run_length).tolist()
    return out


def _true_jaccard(a: list[str], b: list[str], n: int = SETTINGS.ngram) -> float:
    grams_a = {tuple(a[i : i + n]) for i in range(len(a) - n + 1)}
    grams_b = {tuple(b[i : i + n]) for i in range(len(b) - n + 1)}
    return len(grams_a & grams_b) / len(grams_a | grams_b)


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB93FE53A87CB) & MASK64
    return h ^ (h >> 33)


def _reference_hash(ngram: str) -> int:
    """The documented shingle hash of one n-gram, in plain Python integers."""
    poly, power = 0, 1
    for char in ngram:
        poly = (poly + (ord(char) + 1) * power) & MASK64
        power = (power * 0x9E3779B97F4A7C15) & MASK64
    return _fmix64(poly)


def _reference_ngrams(text: str, n: int) -> list[str]:
    words = normalize_for_dedup(text).split()
    n = min(n, len(words))
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)] if words else []


def _reference_shingles(text: str, n: int) -> list[int]:
    return sorted({_reference_hash(ngram) for ngram in _reference_ngrams(text, n)})


def _reference_normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join("".join(" " if unicodedata.category(c).startswith("P") else c for c in text).split())


def test_normalize_folds_case_unicode_forms_punctuation_and_space():
    assert normalize_for_dedup("  Héllo,\tWORLD!!  ｆｕｌｌ—width and/or «quoted» $5 ") == (
        "héllo world full width and or quoted $5"
    )
    assert normalize_for_dedup("ﬁne\u00a0\n day…") == "fine day"
    assert normalize_for_dedup(" ,.;!? ") == ""


def test_normalize_matches_a_character_by_character_reference():
    rng = np.random.default_rng(7)
    alphabet = [chr(c) for c in rng.integers(0, 0x30000, size=3000)]  # every plane 0-2 category
    alphabet += list(" \t\n\x1c\x85\u00a0\u2028\u3000.,;!?-—…«»'\"()")
    alphabet += ["\ud800", "ｆ", "ﬁ", "𝔸", "😀", "Ǆ"]  # a lone surrogate, compatibility forms, plane 1
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 60))))
        assert normalize_for_dedup(text) == _reference_normalize(text), ascii(text)


def test_shingles_follow_the_documented_hash():
    long_text = " ".join(_document(np.random.default_rng(9), 12000))  # past the cached powers (64 Ki points)
    assert len(normalize_for_dedup(long_text)) > 1 << 16
    for text in ["Héllo, wörld! 世界 is big and very round today", "one two", "x", "a b c d e", long_text]:
        assert [int(h) for h in shingles(text, 5)] == _reference_shingles(text, 5)
    assert shingles("a b c d e f", 5).size == 2
    assert shingles("a b c d e f", 5).dtype == np.uint64
    assert shingles("b a c d e f", 5).tolist() != shingles("a b c d e f", 5).tolist()  # word order matters


def test_empty_and_short_texts():
    assert shingles("", 5).size == 0
    assert shingles(" ... ", 5).size == 0
    empty = signature("")
    assert empty.shape == (SETTINGS.num_perm,) and np.all(empty == np.iinfo(np.uint32).max)
    assert estimated_jaccard(empty, signature("!?")) == 1.0
    short = signature("Hello, world")
    assert shingles("Hello, world", 5).size == 1
    assert np.array_equal(short, signature("hello world"))
    assert estimated_jaccard(short, signature("hello there")) < 0.1
    assert estimated_jaccard(short, empty) < 0.1


def _datasketch_permutations() -> list[tuple[int, int]]:
    gen = np.random.RandomState(SETTINGS.seed)
    return [
        (int(gen.randint(1, PRIME, dtype=np.uint64)), int(gen.randint(0, PRIME, dtype=np.uint64)))
        for _ in range(SETTINGS.num_perm)
    ]


def test_signature_is_datasketch_legacy_minhash():
    """Big-integer reference of datasketch's uint64 arithmetic: ``a * x + b`` wraps before the modulo."""
    text = " ".join(_document(np.random.default_rng(1), 60))
    xs = [int(h) >> 32 for h in shingles(text, SETTINGS.ngram)]
    expected = [min(((a * x + b) & MASK64) % PRIME & 0xFFFFFFFF for x in xs) for a, b in _datasketch_permutations()]
    sig = signature(text)
    assert sig.dtype == np.uint32
    assert sig.tolist() == expected
    exact = [min((a * x + b) % PRIME & 0xFFFFFFFF for x in xs) for a, b in _datasketch_permutations()]
    assert sig.tolist() != exact  # the wrap matters: exact modular arithmetic gives other signatures


def test_mersenne_reduction_at_and_around_multiples_of_the_prime():
    """Values that fold to p .. p + 7, or wrap past 2**64, reduce as numpy's ``%`` does."""
    targets = [k * PRIME + d for k in range(1, 9) for d in (-2, -1, 0, 1, 2)] + [MASK64 - d for d in range(4)]
    targets += [(1 << 62) - 2, (1 << 63) - 1, 1 << 63, PRIME - 1, 0, 1]
    targets = [t for t in targets if 0 <= t <= MASK64]
    x = np.array([[0], [1]], dtype=np.uint64)  # b alone, then a + b (wrapping past 2**64)
    for t in targets:
        a = np.array([[t // 2 + 1]], dtype=np.uint64)
        b = np.array([[t]], dtype=np.uint64)
        wrapped = (t + t // 2 + 1) & MASK64
        assert _permute_min(x, a, b).tolist() == [min(t % PRIME & 0xFFFFFFFF, wrapped % PRIME & 0xFFFFFFFF)], t
    rng = np.random.default_rng(6)
    x = rng.integers(0, 1 << 32, size=(5000, 1), dtype=np.uint64)
    a = rng.integers(1, PRIME, size=(1, 64), dtype=np.uint64)
    b = rng.integers(0, PRIME, size=(1, 64), dtype=np.uint64)
    assert np.array_equal(_permute_min(x, a, b), ((x * a + b) % np.uint64(PRIME) & np.uint64(0xFFFFFFFF)).min(axis=0))


def test_signatures_are_the_same_in_other_processes():
    text = "Déjà vu: the same words, hashed in another process! " * 5
    code = (
        "import sys\n"
        "from curation.minhash import MinHashSettings, band_keys, signature\n"
        "sig = signature(sys.argv[1])\n"
        "print(sig.tobytes().hex(), b''.join(band_keys(sig, MinHashSettings())).hex())\n"
    )
    sig = signature(text)
    expected = f"{sig.tobytes().hex()} {b''.join(band_keys(sig, SETTINGS)).hex()}"
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        result = subprocess.run(
            [sys.executable, "-c", code, text], env=env, cwd=REPO, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == expected


def test_exact_copies_agree_everywhere():
    words = _document(np.random.default_rng(2), 300)
    text = " ".join(words)
    variant = "  " + ", ".join(w.upper() for w in words) + "!!"
    a, b = signature(text), signature(variant)
    assert estimated_jaccard(a, b) == 1.0
    assert band_keys(a, SETTINGS) == band_keys(b, SETTINGS)


def test_near_copies_collide_and_verify():
    rng = np.random.default_rng(3)
    collisions = 0
    for _ in range(40):
        words = _document(rng, 400)
        near = _edited(words, rng, runs=2)  # 5% of the words, in two runs
        assert sum(x != y for x, y in zip(words, near)) >= 18
        assert _true_jaccard(words, near) >= 0.85
        a, b = signature(" ".join(words)), signature(" ".join(near))
        collisions += bool(set(band_keys(a, SETTINGS)) & set(band_keys(b, SETTINGS)))
        assert duplicates_in_bucket([("near", b), ("base", a)], SETTINGS.threshold) == [("near", "base")]
    # A pair of Jaccard 0.85 to 0.9 misses every band with probability 0.4% to 1.2%.
    assert collisions >= 38


def test_far_pairs_never_verify():
    rng = np.random.default_rng(4)
    pairs = []
    for i in range(200):
        words = _document(rng, 400)
        other = _document(rng, 400) if i % 2 else _edited(words, rng, runs=int(rng.integers(10, 17)))
        assert _true_jaccard(words, other) < 0.5
        pairs.append((signature(" ".join(words)), signature(" ".join(other))))
    edited_estimates = [estimated_jaccard(a, b) for a, b in pairs[::2]]
    assert 0.2 < np.mean(edited_estimates) < 0.5  # the edited half is genuinely similar, just not enough
    for a, b in pairs:
        assert estimated_jaccard(a, b) < SETTINGS.threshold
        assert duplicates_in_bucket([("x", a), ("y", b)], SETTINGS.threshold) == []


def test_estimates_agree_with_datasketch_and_the_true_jaccard():
    rng = np.random.default_rng(5)
    mine_errors, datasketch_errors = [], []
    for runs in list(range(0, 15)) * 2:
        a_text = " ".join(words := _document(rng, 300))
        b_text = " ".join(_edited(words, rng, runs=runs))
        a_set, b_set = shingles(a_text, 5), shingles(b_text, 5)
        true = len(np.intersect1d(a_set, b_set)) / len(np.union1d(a_set, b_set))
        sketches = []
        for hashes in (a_set, b_set):
            sketch = datasketch.MinHash(num_perm=SETTINGS.num_perm, seed=SETTINGS.seed)
            sketch.update_batch([int(h).to_bytes(8, "little") for h in hashes])
            sketches.append(sketch)
        mine_errors.append(estimated_jaccard(signature(a_text), signature(b_text)) - true)
        datasketch_errors.append(sketches[0].jaccard(sketches[1]) - true)
    for errors in (mine_errors, datasketch_errors):
        assert max(abs(e) for e in errors) <= 0.15
        assert np.mean(np.abs(errors)) <= 0.05
        assert abs(np.mean(errors)) <= 0.03


def _sig_pair(matching: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two signatures that agree in exactly ``matching`` positions."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**32, size=SETTINGS.num_perm, dtype=np.uint32)
    b = a.copy()
    b[matching:] ^= 1
    return a, b


def test_duplicates_in_bucket_keeps_the_smallest_id_in_any_order():
    base, near = _sig_pair(100, 0)
    members = [("b", near), ("a", base), ("c", base.copy())]
    expected = [("b", "a"), ("c", "a")]
    for order in itertools.permutations(members):
        assert duplicates_in_bucket(list(order), 0.7) == expected
    assert duplicates_in_bucket(members[:1], 0.7) == []
    assert duplicates_in_bucket([], 0.7) == []
    assert duplicates_in_bucket(members + [("a", base)], 0.7) == expected  # a repeated id counts once


def test_duplicates_in_bucket_compares_against_kept_members_only():
    n = SETTINGS.num_perm
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**32, size=n, dtype=np.uint32)
    b, c = a.copy(), a.copy()
    b[: n // 5] ^= 1  # a ~ b: 0.8
    c[: n // 5] ^= 1
    c[n // 5 : 2 * n // 5] ^= 2  # b ~ c: 0.8, a ~ c: 0.6
    assert duplicates_in_bucket([("c", c), ("b", b), ("a", a)], 0.7) == [("b", "a")]
    # A member matching two kept members is a duplicate of the smaller one.
    d = a.copy()
    d[n // 2 :] ^= 4  # d vs a: 0.5, so d is kept
    e = a.copy()
    e[n // 2 : n // 2 + n // 8] ^= 4  # e ~ a: 0.875, e ~ d: 0.625
    assert duplicates_in_bucket([("e", e), ("d", d), ("a", a)], 0.6) == [("e", "a")]


def test_threshold_is_inclusive():
    a, b = _sig_pair(84, 2)  # 84 / 112 = 0.75 exactly
    assert estimated_jaccard(a, b) == 0.75
    assert duplicates_in_bucket([("1", a), ("2", b)], 0.75) == [("2", "1")]
    assert duplicates_in_bucket([("1", a), ("2", b)], 0.76) == []


def test_band_keys_one_per_band_and_bands_never_collide():
    sig = np.zeros(SETTINGS.num_perm, dtype=np.uint32)  # every band has the same rows
    keys = band_keys(sig, SETTINGS)
    assert len(keys) == SETTINGS.bands
    assert len(set(keys)) == SETTINGS.bands
    assert all(len(k) == 9 and k[0] == i for i, k in enumerate(keys))
    other = sig.copy()
    other[SETTINGS.rows] = 1  # changes band 1 only
    changed = [x != y for x, y in zip(keys, band_keys(other, SETTINGS))]
    assert changed == [i == 1 for i in range(SETTINGS.bands)]
    custom = MinHashSettings(bands=4, rows=3)
    assert len(band_keys(signature("some words here and more words", custom), custom)) == 4
    with pytest.raises(ValueError):
        band_keys(sig, custom)


def test_settings_and_shapes_are_validated():
    with pytest.raises(ValueError):
        MinHashSettings(bands=300)
    with pytest.raises(ValueError):
        MinHashSettings(threshold=1.5)
    with pytest.raises(ValueError):
        MinHashSettings(ngram=0)
    with pytest.raises(ValueError):
        estimated_jaccard(np.zeros(3, np.uint32), np.zeros(4, np.uint32))
    assert signature("a b c", MinHashSettings(bands=2, rows=5, seed=7)).shape == (10,)
    assert not np.array_equal(signature("a b c", MinHashSettings(seed=2)), signature("a b c"))


def _planted_corpus() -> dict[str, str]:
    """Base documents, each with near copies from exact (case and punctuation changed) to far edits."""
    rng = np.random.default_rng(8)
    corpus = {"empty-1": "", "empty-2": " ... ", "short": "Hello, world"}
    for i in range(40):
        words = _document(rng, 300)
        corpus[f"base{i:02d}"] = " ".join(words)
        corpus[f"base{i:02d}-copy"] = "  " + ", ".join(w.upper() for w in words) + "!"
        for runs in rng.choice([1, 2, 4, 6, 8, 11, 14], size=2, replace=False):
            corpus[f"base{i:02d}-edit{runs:02d}"] = " ".join(_edited(words, rng, runs=int(runs)))
    return corpus


def _dropped(buckets: list[set[str]], sigs: dict[str, np.ndarray]) -> set[str]:
    """The pipeline's rule over all buckets (:mod:`curation.greedy_dedup`)."""
    settled = resolve_in_order([[(m, sigs[m], None) for m in bucket] for bucket in buckets],
                               SignatureSimilarity(SETTINGS.threshold))
    return {doc_id for doc_id, kept in settled if not kept}


def test_signatures_buckets_and_decisions_equal_datasketch_legacy_lsh():
    """datasketch given our shingle hash as ``hashfunc`` agrees on every signature, bucket and decision."""
    corpus = _planted_corpus()
    ours = {doc_id: signature(text) for doc_id, text in corpus.items()}
    sketches = {}
    for doc_id, text in corpus.items():
        sketch = datasketch.MinHash(
            num_perm=SETTINGS.num_perm, seed=SETTINGS.seed, scheme="legacy", hashfunc=lambda g: _reference_hash(g) >> 32
        )
        sketch.update_batch(_reference_ngrams(text, SETTINGS.ngram))
        sketches[doc_id] = sketch
        assert ours[doc_id].tolist() == sketch.hashvalues.tolist(), doc_id

    lsh = datasketch.MinHashLSH(num_perm=SETTINGS.num_perm, params=(SETTINGS.bands, SETTINGS.rows))
    for doc_id, sketch in sketches.items():
        lsh.insert(doc_id, sketch)
    our_buckets: dict[bytes, set[str]] = defaultdict(set)
    for doc_id, sig in ours.items():
        for key in band_keys(sig, SETTINGS):
            our_buckets[key].add(doc_id)
    for band, table in enumerate(lsh.hashtables):
        theirs = {frozenset(table.get(key)) for key in table.keys()}
        assert theirs == {frozenset(m) for key, m in our_buckets.items() if key[0] == band}, band

    their_pairs = {tuple(sorted((i, j))) for i in corpus for j in lsh.query(sketches[i]) if i != j}
    our_pairs = {pair for m in our_buckets.values() for pair in itertools.combinations(sorted(m), 2)}
    assert their_pairs == our_pairs
    verified = {(i, j) for i, j in our_pairs if estimated_jaccard(ours[i], ours[j]) >= SETTINGS.threshold}
    assert verified == {(i, j) for i, j in their_pairs if sketches[i].jaccard(sketches[j]) >= SETTINGS.threshold}
    their_buckets = [table.get(key) for table in lsh.hashtables for key in table.keys()]
    dropped = _dropped(list(our_buckets.values()), ours)
    assert _dropped(their_buckets, {i: s.hashvalues for i, s in sketches.items()}) == dropped

    # Not vacuous: copies and light edits are dropped, some candidates fail verification, bases stay.
    assert {f"base{i:02d}-copy" for i in range(40)} | {"empty-2"} <= dropped
    assert not any(doc_id.endswith(("edit11", "edit14")) for doc_id in dropped)
    assert not any(doc_id.startswith("base") and len(doc_id) == 6 for doc_id in dropped)
    assert len(verified) < len(our_pairs)
