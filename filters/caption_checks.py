"""Checks on synthetic captions: a generated caption is judged against its alt text.

Every check is a :class:`~filters.base.Filter` over a ``CaptionPair`` that holds
both texts:

* ``record.meta["synthetic_caption"]`` (:data:`SYNTHETIC_KEY`): the generated
  caption, after ``synth.captions.clean_generation``;
* ``record.text``: the alt text it rewrites.

CLIP scores, when the pipeline computed them, are read from
``record.stats["clip_score_alt"]`` and ``record.stats["clip_score_caption"]``.
:func:`default_checks` builds the checks of a :class:`CaptionCheckSettings`;
:func:`run_checks` applies them in order. Words are runs of letters and digits,
and each Chinese or Japanese character counts as one word.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from curation.records import SYNTHETIC_CAPTION_KEY
from filters.base import Filter
from filters.language import detect_language

SYNTHETIC_KEY = SYNTHETIC_CAPTION_KEY
CLIP_ALT_KEY = "clip_score_alt"
CLIP_CAPTION_KEY = "clip_score_caption"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?\n])[\s\"'“‘(\[]*$")

REFUSAL_PHRASES = (
    "i'm sorry",
    "i am sorry",
    "as an ai",
    "as a language model",
    "ai language model",
    "i cannot",
    "i can't",
    "i can not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "unable to see",
    "don't have access",
    "the image you provided",
    "the image you've provided",
    "the image you shared",
    "the provided image",
    "alt text",
    "here is a caption",
    "here's a caption",
    "here is the caption",
    "here is a description",
    "here's a description",
    "here is a rewritten",
    "here is a more detailed",
    "caption:",
    "i hope this",
    "let me know",
)
FUNCTION_WORDS = frozenset(
    "a an the and or but nor of in on at to for from by with without into onto over under "
    "near about after before during this that these those is are was were be it its my our "
    "your his her their i we you he she they".split()
)
NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}


def synthetic_caption(record: Any) -> str:
    """The record's generated caption, "" when it has none."""
    return str(record.meta.get(SYNTHETIC_KEY) or "")


def words(text: str) -> list[str]:
    """The words of ``text``: runs of letters and digits, each CJK character alone."""
    return _WORD.findall(text)


def fold(text: str) -> str:
    """``text`` for matching: NFKC, accents removed, case-folded, curly apostrophes straightened."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().replace("’", "'")


def alt_text_entities(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """The numbers and names of an alt text, folded for matching.

    Numbers are runs of digits with inner ``.`` or ``,`` (``3.5``, ``1,000``;
    commas are dropped, so ``1,000`` is ``1000``). Names (people, places, brands)
    are words starting with a capital letter, of two characters or more, not
    at the start of the text or of a sentence (after ``.``, ``!``, ``?`` or a
    line break) and not a function word ("The", "And", "In" in title-case alt texts).

    Returns:
        ``(numbers, names)``.
    """
    text = unicodedata.normalize("NFKC", text)
    numbers = frozenset(m.group().replace(",", "") for m in _NUMBER.finditer(text))
    names = frozenset(
        fold(m.group())
        for m in _WORD.finditer(text)
        if m.group()[0].isupper()
        and len(m.group()) > 1
        and fold(m.group()) not in FUNCTION_WORDS
        and not _SENTENCE_START.search(text[: m.start()])
    )
    return numbers, names


@dataclass(frozen=True)
class CaptionLengthCheck(Filter):
    """Drops empty, too short and too long synthetic captions.

    A rewrite must be a real caption (``min_words``) and add to its alt text: it
    needs at least ``min_length_ratio`` times the alt text's words. An alt text of
    ``max_words / min_length_ratio`` words or more cannot be rewritten longer; its
    pair falls back to the alt text.

    Attributes:
        min_words: fewest words of a caption.
        max_words: most words of a caption (the prompts ask for at most 80).
        min_length_ratio: fewest caption words per alt-text word.
    """

    name: ClassVar[str] = "caption_length"
    min_words: int = 8
    max_words: int = 120
    min_length_ratio: float = 1.25

    def score(self, record: Any) -> dict[str, float]:
        n_words, alt_words = len(words(synthetic_caption(record))), len(words(record.text or ""))
        return {"words": n_words, "alt_words": alt_words, "length_ratio": n_words / max(alt_words, 1)}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["words"] == 0:
            return False, "caption_empty"
        if score["words"] < self.min_words or score["words"] < self.min_length_ratio * score["alt_words"]:
            return False, "caption_too_short"
        if score["words"] > self.max_words:
            return False, "caption_too_long"
        return True, None


@dataclass(frozen=True)
class CaptionRepetitionCheck(Filter):
    """Drops captions caught in a repetition loop.

    The score is the share of the caption's word n-grams (case-folded) that
    repeat an earlier one. Natural captions stay far below the default: "a woman
    in a red dress and a woman in a blue dress" scores 2/11 with trigrams; a
    sentence said twice scores about one half.

    Attributes:
        n: the n-gram length, in words.
        max_dup_share: largest share of repeated n-grams accepted.
    """

    name: ClassVar[str] = "caption_repetition"
    n: int = 3
    max_dup_share: float = 0.2

    def score(self, record: Any) -> dict[str, float]:
        folded = [fold(w) for w in words(synthetic_caption(record))]
        grams = [tuple(folded[i : i + self.n]) for i in range(len(folded) - self.n + 1)]
        return {"dup_ngram_share": (len(grams) - len(set(grams))) / max(len(grams), 1)}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["dup_ngram_share"] > self.max_dup_share:
            return False, "caption_repetition"
        return True, None


@dataclass(frozen=True)
class CaptionRefusalCheck(Filter):
    """Drops refusals and chat boilerplate ("I'm sorry", "As an AI", "Here is a caption").

    Phrases match case-insensitively as whole words. A phrase the alt text holds
    itself does not count: the caption of "I Can't Stop Loving You, poster" may
    say "I can't".

    Attributes:
        phrases: the phrases, lower case, with straight apostrophes.
    """

    name: ClassVar[str] = "caption_refusal"
    phrases: tuple[str, ...] = REFUSAL_PHRASES

    def score(self, record: Any) -> dict[str, float]:
        pattern = _phrase_pattern(self.phrases)
        found = set(pattern.findall(fold(synthetic_caption(record))))
        found -= set(pattern.findall(fold(record.text or "")))
        return {"hits": len(found)}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["hits"]:
            return False, "caption_refusal"
        return True, None


@functools.cache
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


@dataclass(frozen=True)
class CaptionLanguageCheck(Filter):
    """Drops captions not written in the expected language.

    The expected language is one of ``languages`` when set; otherwise the alt
    text's, when its detection reaches ``min_alt_score`` (alt texts are short and
    often mix in brand names, so an unsure detection expects nothing and the
    caption passes). Detection is fastText lid.176 (``filters.language``).

    Attributes:
        languages: accepted ISO 639 codes; empty to follow the alt text.
        min_alt_score: smallest alt-text detection probability that sets the expectation.
    """

    name: ClassVar[str] = "caption_language"
    languages: tuple[str, ...] = ()
    min_alt_score: float = 0.65

    def score(self, record: Any) -> dict[str, Any]:
        lang, probability = detect_language(synthetic_caption(record))
        alt_lang, alt_probability = detect_language(record.text or "")
        return {"lang": lang, "lang_score": probability, "alt_lang": alt_lang, "alt_lang_score": alt_probability}

    def keep(self, score: dict[str, Any]) -> tuple[bool, str | None]:
        if self.languages:
            expected = self.languages
        elif score["alt_lang_score"] >= self.min_alt_score:
            expected = (score["alt_lang"],)
        else:
            return True, None
        if score["lang"] not in expected:
            return False, "caption_language_mismatch"
        return True, None


@dataclass(frozen=True)
class CaptionEntityCheck(Filter):
    """Drops captions that lose the alt text's numbers or names.

    Entities come from :func:`alt_text_entities`. A number is kept when the
    caption holds it (an English number word counts: "three" keeps ``3``), a
    name when the caption holds it as a word; both after :func:`fold`. The score
    is the share kept of each kind (1.0 when the alt text has none).

    Attributes:
        min_number_share: smallest share of numbers kept (default: all).
        min_name_share: smallest share of names kept.
    """

    name: ClassVar[str] = "caption_entities"
    min_number_share: float = 1.0
    min_name_share: float = 0.8

    def score(self, record: Any) -> dict[str, float]:
        numbers, names = alt_text_entities(record.text or "")
        caption = unicodedata.normalize("NFKC", synthetic_caption(record))
        caption_words = {fold(w) for w in words(caption)}
        caption_numbers = {m.group().replace(",", "") for m in _NUMBER.finditer(caption)}
        caption_numbers |= {NUMBER_WORDS[w] for w in caption_words if w in NUMBER_WORDS}
        return {
            "numbers": len(numbers),
            "numbers_kept": _share(numbers, caption_numbers),
            "names": len(names),
            "names_kept": _share(names, caption_words),
        }

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["numbers_kept"] < self.min_number_share or score["names_kept"] < self.min_name_share:
            return False, "caption_missing_entities"
        return True, None


def _share(wanted: frozenset[str], found: set[str]) -> float:
    return len(wanted & found) / len(wanted) if wanted else 1.0


@dataclass(frozen=True)
class CaptionClipMarginCheck(Filter):
    """Drops captions CLIP finds clearly less related to the image than the alt text.

    Reads the cosine similarities ``stats["clip_score_alt"]`` and
    ``stats["clip_score_caption"]``; the score is ``{"delta": caption - alt}``,
    empty (and the caption passes) when either is missing. The margin tolerates
    the small loss CLIP gives long captions (it reads 77 tokens and was trained on
    alt texts) while catching captions of another image.

    Attributes:
        margin: largest drop of the caption's score below the alt text's accepted.
    """

    name: ClassVar[str] = "caption_clip_margin"
    margin: float = 0.05

    def score(self, record: Any) -> dict[str, float]:
        alt = record.stats.get(CLIP_ALT_KEY, math.nan)
        caption = record.stats.get(CLIP_CAPTION_KEY, math.nan)
        if math.isnan(alt) or math.isnan(caption):
            return {}
        return {"delta": caption - alt}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if "delta" in score and score["delta"] < -self.margin:
            return False, "caption_clip_margin"
        return True, None


@dataclass(frozen=True)
class CaptionCheckSettings:
    """The caption checks to run, as config; a check set to None is skipped.

    The order of :func:`default_checks` runs cheap checks first and the language
    model last but one.
    """

    length: CaptionLengthCheck | None = field(default_factory=CaptionLengthCheck)
    refusal: CaptionRefusalCheck | None = field(default_factory=CaptionRefusalCheck)
    repetition: CaptionRepetitionCheck | None = field(default_factory=CaptionRepetitionCheck)
    entities: CaptionEntityCheck | None = field(default_factory=CaptionEntityCheck)
    language: CaptionLanguageCheck | None = field(default_factory=CaptionLanguageCheck)
    clip_margin: CaptionClipMarginCheck | None = field(default_factory=CaptionClipMarginCheck)


def default_checks(settings: CaptionCheckSettings | None = None) -> list[Filter]:
    """The enabled checks of ``settings`` (all defaults when None): length, refusal,
    repetition, entities, language, CLIP margin."""
    settings = settings or CaptionCheckSettings()
    checks = (
        settings.length,
        settings.refusal,
        settings.repetition,
        settings.entities,
        settings.language,
        settings.clip_margin,
    )
    return [check for check in checks if check is not None]


def run_checks(record: Any, checks: Sequence[Filter]) -> tuple[bool, str | None]:
    """Applies ``checks`` in order, writing each one's score into ``record.stats``.

    Returns:
        ``(True, None)`` when all pass, else ``(False, reason)`` of the first
        failing check (later checks do not run).
    """
    for check in checks:
        verdict = check(record)
        if not verdict.keep:
            return False, verdict.reason
    return True, None
