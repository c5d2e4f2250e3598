"""The exact corpus threshold of a ``keep_fraction`` filter, by radix selection in fixed memory.

**What the threshold is.** Of ``n`` scored records, keep ``k = max(1, round(n * keep_fraction))``
(Python's ``round``: halves go to the even integer; ``k = 0`` when ``n = 0``): the threshold is
the k-th largest score, exactly, and a record is kept when its score is at least the
threshold. Records tied with the threshold all stay, so the kept count is ``k`` plus the
other records whose score equals the k-th largest (none with continuous scores such as CLIP
cosines; the kept share is then within half a record of ``n * keep_fraction``). Ties are
never broken by order or id, so every runner keeps the same records. ``-0.0`` counts as ``0.0``.

**How it is found.** A float64 maps to a 64-bit unsigned key in the same order
(:func:`order_keys`). The k-th largest key is found 16 bits at a time: pass ``p`` counts, among
the keys whose top ``16 p`` bits equal the prefix found so far, how many have each value of
the next 16 bits (65,536 integer counters); walking the counters from the top gives the next
16 bits and the rank left within them (:meth:`Selection.refine`). After four passes the
prefix is the k-th largest key itself. The counters are integer sums, the same in any order,
so the threshold is exact at any corpus size, the same on every runner, and each worker holds
65,536 counters whatever the corpus and ``k``: no sample, no sort, no top-k heap of the corpus.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

DIGIT_BITS = 16
DIGITS = 1 << DIGIT_BITS
PASSES = 64 // DIGIT_BITS
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def order_keys(scores: np.ndarray) -> np.ndarray:
    """The unsigned 64-bit keys of float64 scores, in the floats' order (``-0.0`` as ``0.0``; no NaN)."""
    bits = (np.asarray(scores, dtype=np.float64) + 0.0).view(np.uint64)
    return np.where(bits >> np.uint64(63) == 1, ~bits, bits | np.uint64(_SIGN))


def score_of(key: int) -> float:
    """The float64 of one of the :func:`order_keys`."""
    bits = key ^ _SIGN if key & _SIGN else key ^ _ALL
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def keep_count(n: int, keep_fraction: float) -> int:
    """How many of ``n`` scored records a ``keep_fraction`` keeps (before ties): ``round(n * f)``, at least 1."""
    if n == 0:
        return 0
    return min(n, max(1, round(n * keep_fraction)))


@dataclass(frozen=True)
class Selection:
    """Where the k-th largest key is, after some passes.

    Attributes:
        n: scored records.
        rank: the wanted key's rank (1 = largest) among the keys that match ``prefix``.
        prefix: the top ``bits`` bits of the wanted key.
        bits: bits of the key known so far (16 per pass).
    """

    n: int
    rank: int
    prefix: int = 0
    bits: int = 0

    @classmethod
    def start(cls, first_counts: np.ndarray, keep_fraction: float) -> "Selection | None":
        """From the first pass's counts (:meth:`first_counts`); None without scores."""
        n = int(first_counts.sum())
        if n == 0:
            return None
        return cls(n=n, rank=keep_count(n, keep_fraction)).refine(first_counts)

    @staticmethod
    def first_counts(keys: np.ndarray) -> np.ndarray:
        """The first pass: how many keys have each value of the top 16 bits."""
        return Selection(n=0, rank=0).counts(keys)

    @property
    def done(self) -> bool:
        return self.bits == 64

    def counts(self, keys: np.ndarray) -> np.ndarray:
        """How many of ``keys`` (uint64) match the prefix and have each value of the next 16 bits."""
        if self.bits:
            keys = keys[keys >> np.uint64(64 - self.bits) == np.uint64(self.prefix)]
        digits = (keys >> np.uint64(64 - self.bits - DIGIT_BITS)) & np.uint64(DIGITS - 1)
        return np.bincount(digits.astype(np.intp), minlength=DIGITS)

    def refine(self, counts: np.ndarray) -> "Selection":
        """The selection after a pass's counts of :meth:`digit` over the matching keys."""
        from_top = np.cumsum(counts[::-1], dtype=np.int64)
        position = int(np.searchsorted(from_top, self.rank))  # the first digit, from the top, reaching the rank
        if position >= DIGITS:
            raise ValueError(f"rank {self.rank} beyond the {int(from_top[-1])} matching keys")
        above = int(from_top[position - 1]) if position else 0
        digit = DIGITS - 1 - position
        return Selection(self.n, self.rank - above, (self.prefix << DIGIT_BITS) | digit, self.bits + DIGIT_BITS)

    @property
    def threshold(self) -> float:
        if not self.done:
            raise ValueError(f"only {self.bits} bits known")
        return score_of(self.prefix)

