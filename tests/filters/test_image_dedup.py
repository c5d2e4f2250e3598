import numpy as np
import pytest

from filters.image_dedup import ImageDedupSettings, PhashSimilarity, phash_band_keys


def _flip(phash: str, bits: list[int]) -> str:
    value = int(phash, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:016x}"


@pytest.mark.parametrize("distance", [0, 1, 4, 7])
def test_hashes_within_the_distance_always_share_a_band(distance):
    rng = np.random.default_rng(distance)
    for _ in range(200):
        phash = f"{int(rng.integers(0, 2**63)):016x}"
        near = _flip(phash, list(rng.choice(64, size=distance, replace=False)))
        assert set(phash_band_keys(phash, distance)) & set(phash_band_keys(near, distance))


def test_distant_hashes_rarely_share_a_band():
    rng = np.random.default_rng(0)
    shared = sum(
        bool(set(phash_band_keys(f"{int(rng.integers(0, 2**63)):016x}", 4))
             & set(phash_band_keys(f"{int(rng.integers(0, 2**63)):016x}", 4)))
        for _ in range(500)
    )
    assert shared < 10


def test_near_copies_are_within_the_distance_inclusive():
    base = "f0f0f0f0f0f0f0f0"
    similarity = PhashSimilarity(max_distance=4)
    rows = similarity.stack([base, _flip(base, [1, 2]), _flip(base, [1, 2, 3, 4]), _flip(base, [1, 2, 3, 4, 5]),
                             _flip(base, [63])])
    assert rows.dtype == np.uint64 and int(rows[4]) == int(base, 16) ^ (1 << 63)
    assert similarity(rows, rows[0]).tolist() == [True, True, True, False, True]
    assert PhashSimilarity(max_distance=0)(rows, rows[0]).tolist() == [True, False, False, False, False]


def test_too_common_and_settings_checks():
    settings = ImageDedupSettings(max_pages=10)
    assert not settings.too_common(10) and settings.too_common(11)
    with pytest.raises(ValueError):
        ImageDedupSettings(max_distance=16)
    with pytest.raises(ValueError):
        ImageDedupSettings(max_pages=0)
