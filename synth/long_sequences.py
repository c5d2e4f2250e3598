"""Synthetic long-context sequences: which short samples go into which long sequence.

The recipe's long-context stage trains on sequences of up to 64K tokens. Besides long
videos and long documents, it makes them from independent short samples (captioned
images, document pages): their images, concatenated, are the input, and their
descriptions, in the same order, the target. This module only plans: given each
sample's cost in tokens (its visual tokens, its description's text tokens and the
separator after it), it says which samples make up each sequence, in order.

Policy: the samples are used ``repeats`` times, in as many passes. Each pass takes
every sample once, in an order shuffled by ``(seed, pass)`` after sorting the keys (so
the order the samples arrive in does not matter), and cuts it greedily into sequences
(next fit): a sample that does not fit the room left in the current sequence starts the
next one. A sequence never spans two passes, so no sequence holds a sample twice.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Use:
    """One place of a sample in a sequence: its key, and which of its uses (pass) it is, from 0."""

    key: str
    use: int


def plan_sequences(costs: Mapping[str, int], max_tokens: int, seed: int = 0, repeats: int = 1) -> list[list[Use]]:
    """Plans the long sequences.

    Args:
        costs: sample key -> the tokens it adds to a sequence.
        max_tokens: the most tokens a sequence may hold.
        seed: seeds the order of each pass.
        repeats: how many times each sample is used (each in a different sequence).

    Returns:
        The sequences, each a list of :class:`Use` in sequence order; the costs of a
        sequence's samples add up to at most ``max_tokens``.

    Raises:
        ValueError: on a non-positive ``max_tokens`` or ``repeats``, a negative cost, or a
            sample that alone costs more than ``max_tokens``.
    """
    if max_tokens < 1 or repeats < 1:
        raise ValueError(f"max_tokens and repeats must be positive, got {max_tokens} and {repeats}")
    if any(cost < 0 for cost in costs.values()):
        raise ValueError("sample costs must not be negative")
    too_long = sorted(key for key, cost in costs.items() if cost > max_tokens)
    if too_long:
        raise ValueError(f"{len(too_long)} samples cost more than {max_tokens} tokens, e.g. {too_long[0]!r}")
    sequences: list[list[Use]] = []
    for use in range(repeats):
        current: list[Use] = []
        used = 0
        for key in pass_order(sorted(costs), seed, use):
            if current and used + costs[key] > max_tokens:
                sequences.append(current)
                current, used = [], 0
            current.append(Use(key, use))
            used += costs[key]
        if current:
            sequences.append(current)
    return sequences


def pass_order(keys: list[str], seed: int, pass_: int) -> list[str]:
    """``keys`` shuffled for one pass, the same on every machine and Python version."""
    digest = hashlib.sha256(f"{seed}:{pass_}".encode()).digest()
    order = list(keys)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order
