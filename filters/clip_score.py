"""CLIP score: keep image-text pairs whose embeddings agree.

The score itself is computed by the CLIP model step and stored in
``record.stats["clip_score"]``; this filter only judges it. Two modes:

* an absolute ``threshold`` (LAION-5B used 0.28 with ViT-B/32), or
* ``keep_fraction``: keep the top fraction of the corpus, as DataComp does. The
  pipeline computes the corpus quantile and calls :meth:`with_threshold`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from filters.base import Filter

SCORE_KEY = "clip_score"


@dataclass(frozen=True)
class ClipScoreFilter(Filter):
    """Drops records whose CLIP score is below a threshold.

    Attributes:
        threshold: absolute cosine-similarity threshold (kept when score >= threshold).
        keep_fraction: in (0, 1]; keep this top fraction of the corpus instead.
    """

    name: ClassVar[str] = SCORE_KEY
    threshold: float | None = 0.28
    keep_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.keep_fraction is not None and not 0 < self.keep_fraction <= 1:
            raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")

    @property
    def needs_corpus_quantile(self) -> bool:
        return self.keep_fraction is not None

    @property
    def quantile(self) -> float:
        """The corpus quantile whose value becomes the threshold."""
        return 1.0 - (self.keep_fraction or 1.0)

    def with_threshold(self, threshold: float) -> "ClipScoreFilter":
        """A copy that judges with an absolute threshold (the resolved quantile)."""
        return dataclasses.replace(self, threshold=threshold, keep_fraction=None)

    def score(self, record: Any) -> float:
        return float(record.stats.get(SCORE_KEY, math.nan))

    def keep(self, score: float) -> tuple[bool, str | None]:
        if math.isnan(score):
            return False, "clip_score_missing"
        if self.keep_fraction is not None:
            raise RuntimeError("corpus quantile not resolved: call with_threshold() first")
        if self.threshold is not None and score < self.threshold:
            return False, "low_clip_score"
        return True, None
