"""Text quality rules of the interleaved web-page pipeline, after OBELICS.

Laurençon et al. 2023, "OBELICS: An Open Web-Scale Filtered Dataset of
Interleaved Image-Text Documents" (arXiv:2306.16527, "Filtering multimodal web
documents" and its appendix), filter text twice: paragraph by paragraph (their "node level"), dropping
the paragraphs that fail, then the whole page, dropping the page. Both levels
run the same rules with different thresholds; the defaults are those of the
published config (``obelisc/configs/config_filter_web_documents.yaml``) and the
semantics those of the published code (``obelics/processors/web_document_filtering.py``):

* :class:`TextRules` holds the thresholds, with the paragraph-level defaults, and
  :func:`filter_paragraphs` applies them to the text segments of a page.
* :class:`WebTextQualityFilter` holds them with the document-level defaults and
  judges a whole :class:`~curation.records.InterleavedDoc`; it also runs Gopher's
  repetition rules (Rae et al. 2021), with which OBELICS removes pages of repeated
  paragraphs and n-grams when it collects them.

Words are the lower-cased word-character runs of :mod:`filters.text_quality`
holding at least one letter. OBELICS splits on whitespace and strips special
characters from both ends of each word, so, as here, numbers are not words and
punctuation is not part of one; the two differ on inner hyphens and slashes
(``e-mail`` is two words here, one there). The perplexity and per-paragraph
language-ID rules need models and are not here (language ID lives in
:mod:`filters.language`); the image-count rule is not a text rule.

The word lists follow each page's language (:func:`filters.language.rules_language`,
``language: auto``): English keeps the lists below, other languages take those of
:mod:`filters.wordlists` (stop words from Stopwords ISO; flagged words from LDNOOBW through
glin-profanity, with the English list added, as adult spam is often in English; common words
from wordfreq). In Chinese, Japanese, Thai and Korean the share-of-stop-words and
common-word rules are off (their stop words are not whitespace-separated words) and flagged
words are counted where they occur, over characters (Korean: over words).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from curation.records import InterleavedDoc, Segment
from filters import wordlists
from filters.base import Filter
from filters.language import rules_language
from filters.text_quality import _CHAR_WORD, _PARAGRAPH_BREAK, _WORD, GopherRepetitionFilter, _ngram_labels
from filters.wordlists import SUBSTRING_LANGUAGES, UNSEGMENTED, count_substrings

STOPWORDS = tuple(
    """
    a an the this that these those each every either neither some any no all both few many much
    more most other another such own same i me my mine myself we us our ours ourselves you your
    yours yourself yourselves he him his himself she her hers herself it its itself they them
    their theirs themselves one who whom whose which what whatever whoever am is are was were be
    been being have has had having do does did doing will would shall should can could may might
    must ought i'm i've i'd i'll you're you've you'll we're we've they're they've it's that's
    there's let's don't doesn't didn't isn't aren't wasn't weren't can't won't wouldn't couldn't
    shouldn't about above across after against along among around as at before behind below
    beneath beside between beyond by down during except for from in inside into like near of off
    on onto out outside over past per since through throughout till to toward towards under until
    up upon via with within without and but or nor so yet if because although though while
    whereas unless whether than then once when where why how not also just only very too again
    further here there now even ever still already
    """.split()
)
"""English function words: articles, pronouns, auxiliaries, prepositions, conjunctions.

The English list: a compact stand-in for OBELICS's list of about 300 (``STOPWORDS`` in
its ``filtering_utils.py``), which adds slang and misspellings (``coz``, ``thier``); kept so
that English pages are judged as before. Other languages use :func:`filters.wordlists.stopwords`.
"""

FLAGGED_WORDS = (
    "porn",
    "porno",
    "pornstar",
    "xxx",
    "hentai",
    "erotic",
    "camgirl",
    "milf",
    "orgy",
    "threesome",
    "dildo",
    "vibrator",
    "masturbation",
)
"""English adult-content words, a short sample of OBELICS's list of 67 (``FLAGGED_WORDS`` in
its ``filtering_utils.py``), kept so that English pages are judged as before; other languages
use :func:`filters.wordlists.flagged_words` with these added. Pass a longer list through the
``flagged_words`` setting.
"""

PUNCTUATION = ",;:?!.，、。！？；：،؛؟।"
"""OBELICS's marks (``, ; : ? ! .``) with their full-width (Chinese, Japanese), Arabic-script
and Devanagari forms."""

UNPUNCTUATED = frozenset({"th"})
"""Languages that mark no sentence ends (Thai separates sentences with spaces): no punctuation rule."""


@dataclass(frozen=True)
class TextRules:
    """OBELICS's text rules; the defaults are its paragraph-level thresholds.

    A text fails the first rule it breaks, in this order (its reason in brackets):
    it has fewer than ``min_words`` words (``too_few_words``) or more than
    ``max_words`` (``too_many_words``); its top character n-grams are too large a
    share of all its character n-grams (``char_repetition``); too many of its word
    n-grams occur more than once (``word_repetition``); too many of its characters
    are not letters (``special_chars``); too few of its words are stop words
    (``stopwords``); too many are flagged words (``flagged_words``); too few of
    its tokens are punctuation marks (``punctuation``); too few of its words are
    common words (``common_words``).

    Character repetition follows BigScience ROOTS, as OBELICS does: of the
    distinct character n-grams, the ``k = min(floor(sqrt(distinct)), repeated)``
    most frequent ones, where ``repeated`` is how many occur more than once, and
    the ratio is their occurrences over all n-gram occurrences. Word repetition
    is the share of word n-gram occurrences whose n-gram occurs more than once.
    Special characters are all characters but letters, so whitespace, digits and
    punctuation count (OBELICS enumerates its set: ASCII punctuation, digits,
    whitespace, about 200 symbols and every emoji). The punctuation ratio is marks
    over tokens, tokens being word-character runs (numbers included) and marks.

    Attributes:
        min_words: fewest words accepted (OBELICS: 4).
        max_words: most words accepted (OBELICS: 1,000).
        char_repetition_n: character n-gram length (OBELICS: 10).
        max_char_repetition: largest character repetition ratio (OBELICS: 0.1).
        word_repetition_n: word n-gram length (OBELICS: 5).
        max_word_repetition: largest word repetition ratio (OBELICS: 0.1).
        max_special_char_ratio: largest share of non-letter characters (OBELICS: 0.3).
        min_stopword_ratio: smallest share of stop words among words (OBELICS: 0.3).
        max_flagged_word_ratio: largest share of flagged words among words (OBELICS: 0.01).
        min_punctuation_ratio: smallest share of punctuation marks among tokens
            (OBELICS: 0.001, so a paragraph needs one mark).
        min_tokens_for_punctuation: the punctuation rule spares texts with fewer
            tokens (OBELICS: 12 at paragraph level, none at document level).
        min_common_word_ratio: smallest share of common words among words
            (OBELICS: 0.8), checked only when ``common_words_path`` or
            ``common_words_top`` is set.
        common_words_path: a UTF-8 file of common words, one per line, read once
            per process, used for every language. OBELICS reads its own vocabulary
            file (``path_common_words``), which does not ship.
        common_words_top: where no file is given, the common words are the this-many
            most frequent words of the page's language in wordfreq; 0 (the default)
            turns the rule off. Languages wordfreq lacks skip it.
        stopwords: stop words, lower case, ``'`` for apostrophes, for every language;
            empty (the default): the page language's list (:data:`STOPWORDS` for English).
        flagged_words: flagged words, lower case, for every language; empty (the
            default): the page language's list (:data:`FLAGGED_WORDS` for English).
        punctuation: the marks the punctuation rule counts (OBELICS: ``, ; : ? ! .``; here
            with their full-width, Arabic-script and Devanagari forms).
        language: ``auto`` (detect each page's language) or one code for every page
            (``en``: the English lists for all pages).
    """

    min_words: int = 4
    max_words: int = 1_000
    char_repetition_n: int = 10
    max_char_repetition: float = 0.1
    word_repetition_n: int = 5
    max_word_repetition: float = 0.1
    max_special_char_ratio: float = 0.3
    min_stopword_ratio: float = 0.3
    max_flagged_word_ratio: float = 0.01
    min_punctuation_ratio: float = 0.001
    min_tokens_for_punctuation: int = 12
    min_common_word_ratio: float = 0.8
    common_words_path: str = ""
    common_words_top: int = 0
    stopwords: tuple[str, ...] = ()
    flagged_words: tuple[str, ...] = ()
    punctuation: str = PUNCTUATION
    language: str = "auto"


def filter_paragraphs(
    segments: Sequence[Segment], rules: TextRules = TextRules()
) -> tuple[list[Segment], dict[str, int]]:
    """Drops the paragraphs of the text segments that fail ``rules``.

    Paragraphs are the parts of a text segment between blank lines (OBELICS splits
    each text node on ``\\n\\n``), judged with the word lists of the page's language.
    Kept paragraphs are joined back with a blank line; a text segment with none left
    is removed, and blank paragraphs vanish uncounted. Image segments pass untouched,
    in place.

    Args:
        segments: a page's segments, in order.
        rules: the thresholds.

    Returns:
        The kept segments (new objects where a paragraph was removed) and, per
        reason (``paragraph_too_few_words``, ``paragraph_char_repetition``, ...),
        how many paragraphs it dropped.
    """
    kept: list[Segment] = []
    dropped: Counter[str] = Counter()
    lang = rules_language("\n\n".join(s.text for s in segments if s.kind == "text"), rules.language)
    for segment in segments:
        if segment.kind != "text":
            kept.append(segment)
            continue
        paragraphs = []
        for paragraph in _PARAGRAPH_BREAK.split(segment.text):
            if not paragraph.strip():
                continue
            failure = _failure(_scores(paragraph, rules, lang), rules)
            if failure:
                dropped[f"paragraph_{failure}"] += 1
            else:
                paragraphs.append(paragraph)
        text = "\n\n".join(paragraphs)
        if paragraphs:
            kept.append(segment if text == segment.text else replace(segment, text=text))
    return kept, dict(dropped)


@dataclass(frozen=True)
class WebTextQualityFilter(TextRules, Filter):
    """OBELICS's document-level text rules, then Gopher's repetition rules, on a page.

    The text is ``record.text``, the page's text segments joined by blank lines,
    as OBELICS joins them. Reasons are the :class:`TextRules` ones prefixed ``web_text_``
    (``web_text_too_few_words``, ``web_text_stopwords``, ...), then
    :class:`~filters.text_quality.GopherRepetitionFilter`'s own
    (``gopher_dup_para_fraction``, ``gopher_top_2gram``, ...). Gopher's scores land
    in ``stats`` as ``web_text_quality.gopher.<key>``.

    Attributes:
        gopher_repetition: Gopher's repetition rules; ``None`` skips them.

    The other attributes are :class:`TextRules`'s, with OBELICS's document-level
    defaults where they differ: 10 to 2,000 words, word repetition at most 0.2,
    special characters at most 0.275, stop words at least 0.35, punctuation at
    least 0.03 of tokens whatever the length, common words at least 0.9.
    """

    name: ClassVar[str] = "web_text_quality"
    min_words: int = 10
    max_words: int = 2_000
    max_word_repetition: float = 0.2
    max_special_char_ratio: float = 0.275
    min_stopword_ratio: float = 0.35
    min_punctuation_ratio: float = 0.03
    min_tokens_for_punctuation: int = 0
    min_common_word_ratio: float = 0.9
    gopher_repetition: GopherRepetitionFilter | None = GopherRepetitionFilter()

    def score(self, record: InterleavedDoc) -> dict[str, Any]:
        score = _scores(record.text, self, rules_language(record.text, self.language))
        if self.gopher_repetition is not None:
            gopher = self.gopher_repetition.score(record)
            score.update({f"gopher.{key}": value for key, value in gopher.items()})
        return score

    def keep(self, score: dict[str, Any]) -> tuple[bool, str | None]:
        failure = _failure(score, self)
        if failure:
            return False, f"web_text_{failure}"
        if self.gopher_repetition is not None:
            gopher = {key[len("gopher.") :]: v for key, v in score.items() if key.startswith("gopher.")}
            return self.gopher_repetition.keep(gopher)
        return True, None


def _scores(text: str, rules: TextRules, lang: str) -> dict[str, Any]:
    """Measures ``text``, written in ``lang``, for every rule of ``rules`` that applies to it."""
    tokens = _WORD.findall(text)
    words = [t.lower().replace("’", "'") for t in tokens if any(c.isalpha() for c in t)]
    n_words = max(len(words), 1)
    marks = sum(c in rules.punctuation for c in text)
    score: dict[str, Any] = {
        "lang": lang,
        "words": len(words),
        "char_repetition": _char_repetition(text, rules.char_repetition_n),
        "word_repetition": _word_repetition(words, rules.word_repetition_n),
        "special_chars": sum(not c.isalpha() for c in text) / max(len(text), 1),
        "flagged_words": _flagged_ratio(text, words, lang, _flagged_words(rules, lang)),
        "tokens": len(tokens) + marks,
        "punctuation": 1.0 if lang in UNPUNCTUATED else marks / max(len(tokens) + marks, 1),
    }
    if lang in SUBSTRING_LANGUAGES:
        return score
    stopwords = _word_set(rules.stopwords) if rules.stopwords else _stopwords(lang)
    score["stopwords"] = sum(w in stopwords for w in words) / n_words
    score["stopword_scale"] = 1.0 if rules.stopwords else _stopword_scale(lang, stopwords)
    common = _common_words(rules, lang)
    if common:
        score["common_words"] = sum(w in common for w in words) / n_words
    return score


def _stopwords(lang: str) -> frozenset[str]:
    """The page language's stop words: :data:`STOPWORDS` for English and languages without a list."""
    return (lang != "en" and wordlists.stopwords(lang)) or _word_set(STOPWORDS)


def _stopword_scale(lang: str, stopwords: frozenset[str]) -> float:
    """What OBELICS's stop-word thresholds are multiplied by for ``lang``: how much of its running
    text its list covers over how much of English :data:`STOPWORDS` cover (wordfreq's frequencies),
    at most 1; 1 where wordfreq lacks the language."""
    share = wordlists.stopword_share(lang, stopwords)
    if lang == "en" or share is None:
        return 1.0
    return min(1.0, share / wordlists.stopword_share("en", _word_set(STOPWORDS)))


def _flagged_words(rules: TextRules, lang: str) -> frozenset[str]:
    """The flagged words of ``rules`` or, by default, of the page language with the English ones."""
    if rules.flagged_words:
        return _word_set(rules.flagged_words)
    return _word_set(FLAGGED_WORDS) if lang == "en" else _with_english_flagged(lang)


@functools.cache
def _with_english_flagged(lang: str) -> frozenset[str]:
    return wordlists.flagged_words(lang) | frozenset(FLAGGED_WORDS)


def _flagged_ratio(text: str, words: Sequence[str], lang: str, flagged: frozenset[str]) -> float:
    """Flagged words per word; where words are not space-separated, occurrences per character
    (Chinese, Japanese, Thai) or per word (Korean)."""
    if lang not in SUBSTRING_LANGUAGES:
        return sum(w in flagged for w in words) / max(len(words), 1)
    units = len(_CHAR_WORD.findall(text)) if lang in UNSEGMENTED else len(words)
    return count_substrings(text, flagged) / max(units, 1)


def _common_words(rules: TextRules, lang: str) -> frozenset[str]:
    """The common words of ``rules``' file, else wordfreq's top words of ``lang``; empty: rule off."""
    if rules.common_words_path:
        return _load_words(rules.common_words_path)
    return wordlists.common_words(lang, rules.common_words_top) if rules.common_words_top else frozenset()


def _failure(score: dict[str, float], rules: TextRules) -> str | None:
    """The first rule ``score`` breaks, or ``None``."""
    if score["words"] < rules.min_words:
        return "too_few_words"
    if score["words"] > rules.max_words:
        return "too_many_words"
    if score["char_repetition"] > rules.max_char_repetition:
        return "char_repetition"
    if score["word_repetition"] > rules.max_word_repetition:
        return "word_repetition"
    if score["special_chars"] > rules.max_special_char_ratio:
        return "special_chars"
    if "stopwords" in score and score["stopwords"] < rules.min_stopword_ratio * score["stopword_scale"]:
        return "stopwords"
    if score["flagged_words"] > rules.max_flagged_word_ratio:
        return "flagged_words"
    if score["tokens"] >= rules.min_tokens_for_punctuation and score["punctuation"] < rules.min_punctuation_ratio:
        return "punctuation"
    if "common_words" in score and score["common_words"] < rules.min_common_word_ratio:
        return "common_words"
    return None


def _char_repetition(text: str, n: int) -> float:
    """Share of character n-gram occurrences taken by the most frequent repeated n-grams."""
    counts = sorted(Counter(text[i : i + n] for i in range(len(text) - n + 1)).values(), reverse=True)
    if not counts:
        return 0.0
    repeated = sum(count > 1 for count in counts)
    return sum(counts[: min(math.isqrt(len(counts)), repeated)]) / sum(counts)


def _word_repetition(words: Sequence[str], n: int) -> float:
    """Share of word n-gram occurrences whose n-gram occurs more than once."""
    *_, (_, labels) = _ngram_labels(words, n)
    if not len(labels):
        return 0.0
    return float(np.mean(np.bincount(labels)[labels] > 1))


# One frozenset per word tuple (stopwords, flagged words), built on first use.
_word_set = functools.cache(frozenset)


@functools.cache
def _load_words(path: str) -> frozenset[str]:
    """The lower-cased, non-blank lines of a UTF-8 file."""
    with open(path, encoding="utf-8") as handle:
        return frozenset(line.strip().lower() for line in handle if line.strip())
