"""Content ids: deterministic hashes of what a record is made of."""

from __future__ import annotations

import hashlib


def content_id(*parts: str | bytes, length: int = 32) -> str:
    """Returns a hex id derived from ``parts``, stable across runs and machines.

    Each part is length-prefixed before hashing, so ``("ab", "c")`` and
    ``("a", "bc")`` give different ids.
    """
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:length]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
