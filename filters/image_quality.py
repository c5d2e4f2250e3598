"""Image quality: size, aspect ratio, stored format and byte size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from filters.base import Filter


@dataclass(frozen=True)
class ImageQualityFilter(Filter):
    """Drops images that are too small, too elongated, of an unwanted format or size.

    Works on any record with an ``image`` (:class:`curation.records.ImageData`); ``score``
    also takes an :class:`~curation.records.ImageData` itself, for images inside a page.

    Attributes:
        min_side: the shorter side must be at least this many pixels.
        max_aspect: long side / short side must not exceed this (2.0 means 1:2..2:1).
        formats: stored formats accepted.
        min_bytes: smallest accepted encoded size.
        max_bytes: largest accepted encoded size.
    """

    name: ClassVar[str] = "image_quality"
    min_side: int = 64
    max_aspect: float = 3.0
    formats: tuple[str, ...] = ("jpeg", "png", "webp")
    min_bytes: int = 0
    max_bytes: int = 20_000_000

    def score(self, record: Any) -> dict[str, Any]:
        image = getattr(record, "image", record)
        short, long = sorted((image.width, image.height))
        return {
            "min_side": short,
            "aspect": long / max(short, 1),
            "bytes": len(image.data),
            "format": image.format,
        }

    def keep(self, score: dict[str, Any]) -> tuple[bool, str | None]:
        if score["min_side"] < self.min_side:
            return False, "small_image"
        if score["aspect"] > self.max_aspect:
            return False, "bad_aspect"
        if score["format"] not in self.formats:
            return False, "bad_format"
        if score["bytes"] < self.min_bytes:
            return False, "too_few_bytes"
        if score["bytes"] > self.max_bytes:
            return False, "too_many_bytes"
        return True, None
