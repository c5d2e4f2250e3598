"""Caption sanity: length and junk rules for alt texts and captions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from filters.base import Filter

# Every pattern here runs in time linear in the caption: no two adjacent quantified parts
# can take the same characters (``[\w\s-]*`` already takes the trailing spaces), and
# markup is found without a ``[^>]*`` scan from every ``<`` (see :func:`_has_markup`).
_WORD = re.compile(r"\w+", re.UNICODE)
_FILENAME = re.compile(
    r"^\s*(?:(?:img|dsc|dscn|dcim|pxl|mvimg|screenshot|image|photo|pic)[\s_-]*\d[\w\s-]*$"
    r"|[\w-]+\.(?:jpe?g|png|gif|webp|bmp|tiff?|heic)\s*$)",
    re.IGNORECASE,
)
_URL = re.compile(r"^\s*(?:https?://|www\.)\S+\s*$", re.IGNORECASE)
_TAG_OPEN = re.compile(r"</?[a-z]", re.IGNORECASE)


def _has_markup(text: str) -> bool:
    """Whether ``text`` holds a tag: ``<`` or ``</``, a letter, and a ``>`` somewhere after it.

    The same answer as searching ``</?[a-z][^>]*>``, in linear time: the tag's ``>`` can be
    any later one, so it suffices that a tag opening ends at or before the last ``>``.
    """
    last = text.rfind(">")
    return last > 0 and _TAG_OPEN.search(text, 0, last) is not None


@dataclass(frozen=True)
class CaptionFilter(Filter):
    """Drops empty, too short or long, and junk captions (filenames, URLs, markup, spam).

    Works on any record with a ``text``. Defaults follow DataComp's basic filter
    (at least 2 words and 5 characters) plus common alt-text junk rules.

    Attributes:
        min_words: fewest words accepted.
        max_words: most words accepted.
        min_chars: fewest characters (after stripping) accepted.
        max_chars: most characters accepted.
        min_alpha_ratio: smallest share of letters among non-space characters.
        min_unique_word_ratio: smallest distinct/total word ratio, applied from 6 words on.
    """

    name: ClassVar[str] = "caption"
    min_words: int = 2
    max_words: int = 256
    min_chars: int = 5
    max_chars: int = 2000
    min_alpha_ratio: float = 0.5
    min_unique_word_ratio: float = 0.3

    def __post_init__(self) -> None:
        for name in ("min_words", "max_words", "min_chars", "max_chars"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for low, high in (("min_words", "max_words"), ("min_chars", "max_chars")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})"
                )
        for name in ("min_alpha_ratio", "min_unique_word_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a share in [0, 1], got {getattr(self, name)!r}")

    def score(self, record: Any) -> dict[str, float]:
        text = (record.text or "").strip()
        words = [w.lower() for w in _WORD.findall(text)]
        visible = [c for c in text if not c.isspace()]
        return {
            "chars": len(text),
            "words": len(words),
            "alpha_ratio": sum(c.isalpha() for c in visible) / max(len(visible), 1),
            "unique_word_ratio": len(set(words)) / max(len(words), 1),
            "filename": float(bool(_FILENAME.match(text))),
            "url": float(bool(_URL.match(text))),
            "markup": float(_has_markup(text)),
        }

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["chars"] == 0:
            return False, "caption_empty"
        if score["filename"]:
            return False, "caption_filename"
        if score["url"]:
            return False, "caption_url"
        if score["markup"]:
            return False, "caption_markup"
        if score["words"] < self.min_words or score["chars"] < self.min_chars:
            return False, "caption_too_short"
        if score["words"] > self.max_words or score["chars"] > self.max_chars:
            return False, "caption_too_long"
        if score["alpha_ratio"] < self.min_alpha_ratio:
            return False, "caption_low_alpha"
        if score["words"] >= 6 and score["unique_word_ratio"] < self.min_unique_word_ratio:
            return False, "caption_repetitive"
        return True, None
