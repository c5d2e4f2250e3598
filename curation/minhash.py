"""MinHash LSH: near-duplicate detection for documents, as pure functions.

A document becomes a set of word n-gram hashes (:func:`shingles`), then a MinHash
signature (:func:`signature`): for each of ``bands * rows`` universal hash
functions ``h(x) = (a * x + b) mod (2**61 - 1)``, the smallest value over the
set. Two signatures agree in a position with probability equal to the Jaccard
similarity of the two sets, so the share of equal positions estimates it
(:func:`estimated_jaccard`). This is datasketch's ``MinHash`` scheme (its
"legacy" scheme, the only one before datasketch 2.0, with the same permutation
parameters for a seed), with exact arithmetic modulo the prime where
datasketch's product wraps past 2**64.

Locality-sensitive hashing groups the candidates: the signature is cut into
``bands`` bands of ``rows`` values, each band gives a key (:func:`band_keys`),
and documents sharing any key land in one bucket. With the defaults (14 x 8) a
pair with Jaccard 0.9 shares a key with probability 0.9996, 0.8 with 0.92,
0.7 with 0.56 and 0.5 with 0.05. Candidates in a bucket are then verified on
their whole signatures (:func:`duplicates_in_bucket`), which removes the LSH
false positives.

How a pipeline uses it: emit ``(key, (id, signature))`` for every band key,
group by key, call :func:`duplicates_in_bucket` on each group, and drop every
id that shows up as a duplicate in any bucket. A document is dropped when some
lexicographically smaller document in one of its buckets is a verified near
duplicate, so of each group of mutual near duplicates exactly one document
stays, the one with the smallest id (up to the rare pair LSH misses),
whatever the runner, the sharding or the order of the input. Buckets are
judged independently: a document dropped in one bucket still counts as kept in
another, so in a chain ``a ~ b ~ c`` (``a`` and ``c`` not similar) ``c`` is
dropped too when it shares a bucket with ``b`` but not with ``a``.

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
_LOW29 = np.uint64((1 << 29) - 1)
_LOW32 = np.uint64((1 << 32) - 1)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))
_CHUNK = 256  # shingles per block: keeps the (permutation, shingle) buffers in cache


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
def _punctuation() -> dict[int, str]:
    """``str.translate`` table: every punctuation character (Unicode category P*) to a space."""
    # Unicode puts no punctuation beyond plane 1, so planes 0-1 suffice.
    return {c: " " for c in range(0x20000) if unicodedata.category(chr(c)).startswith("P")}


def normalize_for_dedup(text: str) -> str:
    """The text as near-duplicate detection sees it.

    Unicode NFKC (full-width forms, ligatures and the like fold to their plain
    equivalents), then lowercase, then every punctuation character (Unicode
    category P*: ``.,;:!?'"()[]{}-–—/…`` and their kin in all scripts) replaced by
    a space, then whitespace runs collapsed to one space and the ends stripped.
    Replacing rather than deleting keeps ``word—word`` and ``and/or`` as two
    words. Symbols (``$``, ``+``, emoji), digits and combining marks stay.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(text.translate(_punctuation()).split())


def _mix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (uint64 products wrap by design)."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB93FE53A87CB)
    return x ^ (x >> np.uint64(33))


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """``base ** j mod 2**64`` for ``j < count``."""
    powers = np.full(count, base, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers)


def shingles(text: str, ngram: int) -> np.ndarray:
    """The shingle set of a text: sorted distinct uint64 hashes of its word n-grams.

    An n-gram is ``ngram`` consecutive words of :func:`normalize_for_dedup`
    joined by one space; its hash is the polynomial hash modulo 2**64 of its
    UTF-8 bytes (each byte plus one), finalised by MurmurHash3's fmix64. All
    n-grams come from one pass of prefix sums over the encoded text. A text of
    fewer than ``ngram`` words (but at least one) gives one shingle of all its
    words; an empty text gives an empty array. The hashes are plain integer
    arithmetic, the same in every process and on every machine.
    """
    normalized = normalize_for_dedup(text)
    if not normalized:
        return np.empty(0, dtype=np.uint64)
    data = np.frombuffer(normalized.encode("utf-8"), dtype=np.uint8)
    spaces = np.flatnonzero(data == ord(" "))  # UTF-8 never uses the byte 0x20 inside a character
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [data.size]))
    n = min(ngram, starts.size)
    prefix = np.zeros(data.size + 1, dtype=np.uint64)
    np.cumsum((data.astype(np.uint64) + np.uint64(1)) * _powers(_BASE, data.size), out=prefix[1:])
    first, last = starts[: starts.size - n + 1], ends[n - 1 :]
    return np.unique(_mix64((prefix[last] - prefix[first]) * _powers(_BASE_INVERSE, data.size)[first]))


@functools.cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a_high, a_low, b)`` columns, ``a = a_high * 2**32 + a_low``, as datasketch draws them."""
    gen = np.random.RandomState(seed)
    ab = np.array(
        [(gen.randint(1, _PRIME, dtype=np.uint64), gen.randint(0, _PRIME, dtype=np.uint64)) for _ in range(num_perm)],
        dtype=np.uint64,
    )
    a, b = ab[:, :1], ab[:, 1:]
    parts = (a >> np.uint64(32), a & _LOW32, b)
    for part in parts:
        part.setflags(write=False)
    return parts


def _permute_min(x: np.ndarray, a_high: np.ndarray, a_low: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``min over x of (a * x + b) mod (2**61 - 1)``, per permutation, exact in uint64.

    ``x < 2**32`` and ``a < 2**61``: ``a_low * x`` fits in 64 bits and
    ``a_high * x`` in 61; ``2**61`` is 1 modulo the prime, so multiplying by
    ``2**32`` is a 61-bit rotation and the reduction is shifts, masks and adds.
    Works in place on two (permutation, x) buffers besides the result.
    """
    high = a_high * x  # < 2**61
    low = a_low * x  # < 2**64
    s = high >> np.uint64(29)
    high &= _LOW29
    high <<= np.uint64(32)
    s += high  # high * 2**32 mod p, < 2**61
    np.right_shift(low, np.uint64(61), out=high)
    s += high
    low &= _PRIME
    s += low  # + low mod p (congruent), < 2**62 + 8
    s += b  # < 2**63
    np.right_shift(s, np.uint64(61), out=high)
    s &= _PRIME
    s += high  # congruent, < 2**61 + 4
    np.subtract(s, _PRIME, out=high)  # wraps above s whenever s < p
    np.minimum(s, high, out=s)
    return s.min(axis=1)


def signature(text: str, settings: MinHashSettings = MinHashSettings()) -> np.ndarray:
    """The MinHash signature of a text: ``bands * rows`` uint32 values.

    Value ``i`` is the low 32 bits of ``min((a_i * x + b_i) mod (2**61 - 1))``
    over the shingle set, where ``x`` is the top 32 bits of each shingle hash and
    ``(a_i, b_i)`` are datasketch's permutation parameters for the seed. The
    minimum is taken over the full 61-bit values (an injective map of the 32-bit
    inputs), so keeping 32 bits afterwards adds only a 2**-32 chance of a false
    match per position. An empty text gives all ``2**32 - 1`` (datasketch's
    empty MinHash), so empty texts are duplicates of each other.
    """
    a_high, a_low, b = _permutations(settings.num_perm, settings.seed)
    x = shingles(text, settings.ngram) >> np.uint64(32)
    if x.size == 0:
        return np.full(settings.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    least = np.full(settings.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    for start in range(0, x.size, _CHUNK):
        np.minimum(least, _permute_min(x[start : start + _CHUNK], a_high, a_low, b), out=least)
    return (least & _LOW32).astype(np.uint32)


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


def duplicates_in_bucket(members: Sequence[tuple[str, np.ndarray]], threshold: float) -> list[tuple[str, str]]:
    """Verified near duplicates among the members of one LSH bucket.

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
