"""Webdataset samples of random bytes, for tests and benchmarks of shard writing.

Each sample is a pure function of its index and seed, so a pipeline can make its
samples from a list of indices (cheap to ship to workers) and a check can remake
any of them.
"""

from __future__ import annotations

import random

from manifests.shards import Sample


def random_sample(index: int, seed: int = 0, min_bytes: int = 500, max_bytes: int = 3000) -> Sample:
    """Sample ``s{index}``: a ``jpg`` of ``min_bytes`` to ``max_bytes`` random bytes (so bytes,
    not headers, decide the shard rollover) and a small ``json``."""
    rng = random.Random(seed * 1_000_003 + index)
    return Sample(
        key=f"s{index:08d}",
        fields={"jpg": rng.randbytes(rng.randint(min_bytes, max_bytes)), "json": b'{"i": %d}' % index},
        text_tokens=1,
        visual_tokens=index % 3,
    )
