"""Image safety: drop images an NSFW classifier scores at or above a threshold.

The score (P(nsfw) of Yahoo's open_nsfw, in [0, 1]) is computed by the NSFW model step
(:mod:`curation.models.nsfw`) and stored in ``record.stats["nsfw"]``; this filter only
judges it. open_nsfw's authors read scores below 0.2 as safe and above 0.8 as NSFW with
high probability; the default drops the latter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from filters.base import Filter

SCORE_KEY = "nsfw"


@dataclass(frozen=True)
class NsfwFilter(Filter):
    """Drops records whose NSFW score is at or above ``threshold``.

    Attributes:
        threshold: in [0, 1]; 0 drops every image, anything above 1 keeps every image.
    """

    name: ClassVar[str] = SCORE_KEY
    threshold: float = 0.8

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")

    def score(self, record: Any) -> float:
        return float(record.stats.get(SCORE_KEY, math.nan))

    def keep(self, score: float) -> tuple[bool, str | None]:
        if math.isnan(score):
            return False, "nsfw_missing"
        if score >= self.threshold:
            return False, "nsfw"
        return True, None
