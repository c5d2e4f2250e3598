import numpy as np
import pytest

from filters.image_dedup import ImageDedupSettings, canonical_in_bucket, phash_band_keys


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


def test_canonical_is_the_smallest_sha_within_the_distance():
    base = "f0f0f0f0f0f0f0f0"
    members = [("c", base), ("a", _flip(base, [1, 2])), ("b", _flip(base, [1, 2, 3, 4, 5, 6, 7, 8])), ("c", base)]
    result = dict(canonical_in_bucket(members, max_distance=4))
    assert result == {"a": "a", "b": "b", "c": "a"}


def test_too_common_and_settings_checks():
    settings = ImageDedupSettings(max_pages=10)
    assert not settings.too_common(10) and settings.too_common(11)
    with pytest.raises(ValueError):
        ImageDedupSettings(max_distance=16)
    with pytest.raises(ValueError):
        ImageDedupSettings(max_pages=0)
