"""Corpus-wide image dedup: exact (sha256) and perceptual (pHash) copies, and images on too many pages.

Images with the same sha256 are one image. Images whose 64-bit perceptual
hashes differ in at most ``max_distance`` bits are near copies (the same picture
re-encoded or resized). Finding them without comparing every pair: cut the hash
into ``max_distance + 1`` bands; two hashes within the distance agree on at
least one whole band (pigeonhole), so only images sharing a band key are
compared (:func:`phash_band_keys`, :class:`PhashSimilarity`). Which image stands
for which follows the rule of :mod:`curation.greedy_dedup`: in sha256 order an
image is canonical unless it is a near copy of an image already canonical, and a
near copy becomes the smallest canonical image within ``max_distance`` of it.
So an image is only ever replaced by a canonical image it is itself a near copy
of: in a chain ``a ~ b ~ c`` (``a`` and ``c`` more than ``max_distance`` apart)
``b`` becomes ``a`` and ``c`` stays itself. The choice is the same on every runner.

OBELICS drops images that recur on many pages (logos, banners, buttons): once
copies are merged, an image found on more than ``max_pages`` distinct pages is
dropped everywhere (:meth:`ImageDedupSettings.too_common`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PHASH_BITS = 64


@dataclass(frozen=True)
class ImageDedupSettings:
    """Attributes:
    max_distance: largest pHash Hamming distance of two near copies (0 turns perceptual dedup off).
    max_pages: an image on more distinct pages than this is dropped from all of them.
    """

    max_distance: int = 4
    max_pages: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.max_distance < 16:
            raise ValueError(f"max_distance must be in 0..15, got {self.max_distance}")
        if self.max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, got {self.max_pages}")

    def too_common(self, pages: int) -> bool:
        """True when an image on ``pages`` distinct pages must be dropped."""
        return pages > self.max_pages


def phash_band_keys(phash: str, max_distance: int) -> list[str]:
    """The band keys of a 16-hex-digit pHash: ``max_distance + 1`` bands of nearly equal width.

    Returns one ``"<band>:<bits>"`` key per band; two hashes within ``max_distance``
    bits share at least one key.
    """
    bands = max_distance + 1
    value = int(phash, 16)
    edges = np.linspace(0, PHASH_BITS, bands + 1).astype(int)
    return [
        f"{band}:{(value >> int(low)) & ((1 << int(high - low)) - 1):x}"
        for band, (low, high) in enumerate(zip(edges[:-1], edges[1:]))
    ]


@dataclass(frozen=True)
class PhashSimilarity:
    """Near copies: pHashes at most ``max_distance`` bits apart; the similarity of
    :mod:`curation.greedy_dedup`. Payloads are the 16-hex-digit pHashes."""

    max_distance: int

    def stack(self, phashes: Sequence[str]) -> np.ndarray:
        return np.array([int(phash, 16) for phash in phashes], dtype=np.uint64)

    def __call__(self, rows: np.ndarray, row: np.uint64) -> np.ndarray:
        return np.bitwise_count(rows ^ row) <= self.max_distance
