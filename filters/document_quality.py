"""Document page quality: blank and near-blank pages, OCR confidence, text density."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from filters.base import Filter


@dataclass(frozen=True)
class PageQualityFilter(Filter):
    """Drops pages with too little text, OCR the engine was unsure of, or scans mostly empty of text.

    Works on :class:`curation.records.DocumentPage`. Density is transcript characters per
    megapixel of the page image. The checks apply to pages read from the page (``route``
    ``ocr`` or ``text_layer``); a rendering's target is its exact source, and charts and short
    equations are sparse by nature, so a rendering is only dropped when its target is empty.

    Attributes:
        min_chars: a read page with fewer transcript characters (after whitespace) is blank.
        min_confidence: an OCR page confidence below it is dropped.
        min_density: fewer characters per megapixel on a read page is dropped.
    """

    name: ClassVar[str] = "page_quality"
    min_chars: int = 20
    min_confidence: float = 0.6
    min_density: float = 30.0

    def score(self, record: Any) -> dict[str, float]:
        chars = len("".join(record.transcript.split()))
        megapixels = record.image.width * record.image.height / 1e6 if record.image else 0.0
        return {
            "chars": float(chars),
            "density": chars / megapixels if megapixels else 0.0,
            "confidence": float(record.meta.get("confidence", 1.0)),
            "read": float(record.meta.get("route") in ("ocr", "text_layer")),
        }

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["chars"] < (self.min_chars if score["read"] else 1):
            return False, "blank_page"
        if score["read"] and score["confidence"] < self.min_confidence:
            return False, "low_ocr_confidence"
        if score["read"] and score["density"] < self.min_density:
            return False, "low_text_density"
        return True, None
