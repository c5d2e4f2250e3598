"""MinHash LSH: near-duplicate detection for documents, as pure functions.

A document becomes a set of word n-gram hashes (:func:`shingles`), then a MinHash
signature (:func:`signature`): for each of ``bands * rows`` hash functions
``h(x) = ((a * x + b) mod 2**64) mod (2**61 - 1)``, truncated to 32 bits, the
smallest value over the set. Two signatures agree in a position with
probability (very close to) the Jaccard similarity of the two sets, so the
share of equal positions estimates it (:func:`estimated_jaccard`). This is bit
for bit datasketch's ``MinHash(scheme="legacy")``, its only scheme before
datasketch 2.0: the same permutation parameters for a seed and the same uint64
arithmetic, where ``a * x + b`` wraps past 2**64 before the reduction modulo
the prime. Given our 32-bit shingle hashes as its ``hashfunc``, datasketch's
``hashvalues`` equal our signatures, so its ``MinHashLSH`` with the same bands
and rows builds the same buckets and its ``jaccard`` verifies the same pairs.

Locality-sensitive hashing groups the candidates: the signature is cut into
``bands`` bands of ``rows`` values, each band gives a key (:func:`band_keys`),
and documents sharing any key land in one bucket. With the defaults (14 x 8) a
pair with Jaccard 0.9 shares a key with probability 0.9996, 0.8 with 0.92,
0.7 with 0.56 and 0.5 with 0.05. Candidates in a bucket are then verified on
their whole signatures (:class:`SignatureSimilarity`), which removes the LSH
false positives.

How a pipeline uses it: emit ``(key, (id, signature))`` for every band key,
group by key, and judge the buckets by the rule of :mod:`curation.greedy_dedup`
with :class:`SignatureSimilarity`: in id order, a document is dropped when it
is a verified near duplicate of a document already kept, and its reject names
the smallest such kept document. So every reject names a kept document, and in
a chain ``a ~ b ~ c`` (``a`` and ``c`` not similar) ``a`` and ``c`` both stay.
The outcome is the same whatever the runner, the sharding or the order of the
input (up to the rare pair LSH misses, which is never compared).
:func:`duplicates_in_bucket` is that rule inside one bucket.

Everything here is deterministic across processes and machines: shingle hashes
are plain integer arithmetic, band keys blake2b, and the permutations come from
numpy's ``RandomState`` (whose stream numpy keeps fixed), never from Python's
per-process ``hash()``.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))
_CACHED_POWERS = 1 << 16
_CHUNK = 512  # shingles per block: bounds the (shingle, permutation) buffers, 448 KiB each at 112


@dataclass(frozen=True)
class MinHashSettings:
    """MinHash LSH settings; every document of one dedup run must use the same.

    Attributes:
        ngram: words per shingle.
        bands: LSH bands (at most 256: the band index is one byte of the key).
        rows: signature values per band; the signature has ``bands * rows``.
        seed: seed of the permutations (as datasketch's ``MinHash(seed=...)``).
        threshold: estimated Jaccard a candidate pair must reach to count as a
            duplicate (the verification that removes LSH false positives).
    """

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    threshold: float = 0.7

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.rows < 1 or not 1 <= self.bands <= 256:
            raise ValueError(f"need ngram >= 1, rows >= 1 and 1 <= bands <= 256: {self}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1]: {self.threshold}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


@functools.cache
def _separators() -> np.ndarray:
    """Which code points separate words: punctuation (Unicode category P*) or whitespace.

    Whitespace is what ``str.split()`` splits on. Unicode puts neither beyond
    plane 1, so the table covers planes 0-1 plus one last (False) entry that
    stands for every code point above.
    """
    table = np.zeros(0x20001, dtype=bool)
    for c in range(0x20000):
        table[c] = chr(c).isspace() or unicodedata.category(chr(c)).startswith("P")
    table.setflags(write=False)
    return table


def normalize_for_dedup(text: str) -> str:
    """The text as near-duplicate detection sees it.

    Unicode NFKC (full-width forms, ligatures and the like fold to their plain
    equivalents), then lowercase, then every punctuation character (Unicode
    category P*: ``.,;:!?'"()[]{}-–—/…`` and their kin in all scripts) replaced by
    a space, then whitespace runs collapsed to one space and the ends stripped.
    Replacing rather than deleting keeps ``word—word`` and ``and/or`` as two
    words. Symbols (``$``, ``+``, emoji), digits and combining marks stay.
    """
    return _normalized_points(text).tobytes().decode("utf-32-le", "surrogatepass")


def _normalized_points(text: str) -> np.ndarray:
    """The code points (uint32) of :func:`normalize_for_dedup`, replaced and collapsed vectorised."""
    text = unicodedata.normalize("NFKC", text).lower()
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    separator = _separators()[np.minimum(points, 0x20000)]
    keep = ~separator
    keep[1:] |= ~separator[:-1]  # a word character, or the first separator after one
    points = np.where(separator, np.uint32(ord(" ")), points)[keep]
    return points[:-1] if points.size and points[-1] == ord(" ") else points


def _mix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (uint64 products wrap by design)."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB93FE53A87CB)
    return x ^ (x >> np.uint64(33))


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """``base ** j mod 2**64`` for ``j < count``; read-only, from a cache for texts up to 64 Ki points."""
    if count <= _CACHED_POWERS:
        return _cached_powers(base)[:count]
    powers = np.full(count, base, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers)


@functools.cache
def _cached_powers(base: np.uint64) -> np.ndarray:
    powers = _powers(base, _CACHED_POWERS + 1)
    powers.setflags(write=False)
    return powers


def shingles(text: str, ngram: int) -> np.ndarray:
    """The shingle set of a text: sorted distinct uint64 hashes of its word n-grams.

    An n-gram is ``ngram`` consecutive words of :func:`normalize_for_dedup`
    joined by one space; its hash is the polynomial hash modulo 2**64 of its
    code points (each plus one), finalised by MurmurHash3's fmix64. All n-grams
    come from one pass of prefix sums over the normalized text. A text of fewer
    than ``ngram`` words (but at least one) gives one shingle of all its words;
    an empty text gives an empty array. The hashes are plain integer
    arithmetic, the same in every process and on every machine.
    """
    points = _normalized_points(text)
    if not points.size:
        return np.empty(0, dtype=np.uint64)
    spaces = np.flatnonzero(points == ord(" "))
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [points.size]))
    n = min(ngram, starts.size)
    prefix = np.zeros(points.size + 1, dtype=np.uint64)
    np.cumsum((points.astype(np.uint64) + np.uint64(1)) * _powers(_BASE, points.size), out=prefix[1:])
    first, last = starts[: starts.size - n + 1], ends[n - 1 :]
    hashes = np.sort(_mix64((prefix[last] - prefix[first]) * _powers(_BASE_INVERSE, points.size)[first]))
    return hashes[np.concatenate(([True], hashes[1:] != hashes[:-1]))]


@functools.cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` rows of shape ``(1, num_perm)``, drawn as datasketch's legacy ``MinHash`` draws them."""
    gen = np.random.RandomState(seed)
    ab = np.array(
        [(gen.randint(1, _PRIME, dtype=np.uint64), gen.randint(0, _PRIME, dtype=np.uint64)) for _ in range(num_perm)],
        dtype=np.uint64,
    )
    a, b = ab[:, 0].reshape(1, -1), ab[:, 1].reshape(1, -1)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def _permute_min(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``min over x of ((a * x + b) mod 2**64) mod (2**61 - 1) & (2**32 - 1)``, per permutation.

    ``x`` is a ``(shingles, 1)`` column. The product and the sum wrap modulo
    2**64 as in datasketch's uint64 arithmetic. The reduction modulo the
    Mersenne prime ``p`` folds the top 3 bits onto the low 61 (``2**61`` is 1
    modulo ``p``), which leaves a congruent value of at most ``p + 7``; the
    subtraction of ``p`` it then needs (chance about 2**-58 per value) runs
    only on the blocks that have such a value. Same values as numpy's ``%``,
    without its divisions.
    """
    t = x * a
    t += b
    high = t >> np.uint64(61)
    t &= _PRIME
    t += high
    if t.max() >= _PRIME:
        np.subtract(t, _PRIME, out=high)  # wraps above t wherever t < p
        np.minimum(t, high, out=t)
    t &= _MAX_HASH
    return t.min(axis=0)


def signature(text: str, settings: MinHashSettings = MinHashSettings()) -> np.ndarray:
    """The MinHash signature of a text: ``bands * rows`` uint32 values.

    Value ``i`` is ``min(((a_i * x + b_i) mod 2**64) mod (2**61 - 1) & (2**32 - 1))``
    over the shingle set, where ``x`` is the top 32 bits of each shingle hash and
    ``(a_i, b_i)`` are datasketch's permutation parameters for the seed: exactly
    the ``hashvalues`` of ``datasketch.MinHash(num_perm, seed, scheme="legacy",
    hashfunc=...)`` fed the same 32-bit hashes. An empty text gives all
    ``2**32 - 1`` (datasketch's empty MinHash), so empty texts are duplicates
    of each other.
    """
    a, b = _permutations(settings.num_perm, settings.seed)
    x = (shingles(text, settings.ngram) >> np.uint64(32)).reshape(-1, 1)
    least = np.full(settings.num_perm, _MAX_HASH, dtype=np.uint64)
    for start in range(0, x.shape[0], _CHUNK):
        np.minimum(least, _permute_min(x[start : start + _CHUNK], a, b), out=least)
    return least.astype(np.uint32)


def band_keys(sig: np.ndarray, settings: MinHashSettings = MinHashSettings()) -> list[bytes]:
    """One 9-byte LSH key per band: the band index, then 8 bytes of blake2b of its rows.

    The leading index keeps equal rows in different bands from sharing a key.
    """
    if sig.shape != (settings.num_perm,):
        raise ValueError(f"signature of shape {sig.shape}, settings want ({settings.num_perm},)")
    rows = np.ascontiguousarray(sig, dtype="<u4").reshape(settings.bands, settings.rows)
    return [bytes([i]) + hashlib.blake2b(band.tobytes(), digest_size=8).digest() for i, band in enumerate(rows)]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Share of positions where two signatures agree: the MinHash estimate of their Jaccard."""
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two non-empty signatures of one length: {a.shape}, {b.shape}")
    return float(np.count_nonzero(a == b)) / a.size


@dataclass(frozen=True)
class SignatureSimilarity:
    """Verification of a candidate pair: signatures agreeing in at least ``threshold`` of their
    positions (the :func:`estimated_jaccard`); the similarity of :mod:`curation.greedy_dedup`."""

    threshold: float

    def stack(self, signatures: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(signatures)

    def __call__(self, rows: np.ndarray, sig: np.ndarray) -> np.ndarray:
        return np.count_nonzero(rows == sig, axis=1) / sig.size >= self.threshold


def duplicates_in_bucket(members: Sequence[tuple[str, np.ndarray]], threshold: float) -> list[tuple[str, str]]:
    """Verified near duplicates among the members of one LSH bucket, judged alone.

    This is the rule of :mod:`curation.greedy_dedup` applied to one bucket; a pipeline
    judges all buckets together (a member dropped in one bucket is dropped in all).
    Members are visited in increasing id order (string order). A member whose
    estimated Jaccard with an already *kept* member reaches ``threshold`` is a
    duplicate of the smallest such kept id; otherwise it is kept. Only kept
    members are compared against, so a bucket of ``n`` members with ``k`` kept
    costs ``n * k`` signature comparisons (a bucket of 10,000 copies costs
    10,000), and a chain ``a ~ b ~ c`` whose ends are not similar drops only
    ``b``: ``c`` stays because its only match is itself a duplicate. Within a
    group of mutual near duplicates everything but the smallest id is dropped.

    Args:
        members: ``(record id, signature)`` pairs that share one band key. Ids
            should be unique; a repeated id counts once (ids are content hashes,
            so its signatures are equal).
        threshold: smallest estimated Jaccard that counts as a duplicate.

    Returns:
        ``(duplicate_id, kept_id)`` pairs sorted by duplicate id; the same for
        any order of ``members``.
    """
    ordered = sorted(dict(members).items())
    if len(ordered) < 2:
        return []
    sigs = np.stack([sig for _, sig in ordered])
    kept_ids: list[str] = []
    kept = np.empty_like(sigs)
    pairs: list[tuple[str, str]] = []
    for member_id, sig in zip((i for i, _ in ordered), sigs):
        agree = np.count_nonzero(kept[: len(kept_ids)] == sig, axis=1) / sig.size
        matches = np.flatnonzero(agree >= threshold)
        if matches.size:
            pairs.append((member_id, kept_ids[matches[0]]))
        else:
            kept[len(kept_ids)] = sig
            kept_ids.append(member_id)
    return pairs
