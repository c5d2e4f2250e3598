"""Rule-based text quality filters with their published defaults.

* :class:`GopherQualityFilter` and :class:`GopherRepetitionFilter`: the MassiveText
  rules of Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
  from Training Gopher" (arXiv:2112.11446, section A.1.1 and table A1).
* :func:`c4_clean` and :class:`C4QualityFilter`: the C4 rules of Raffel et al. 2020,
  "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer" (JMLR 21, section 2.2), with the defaults of the reference code
  (``tensorflow_datasets/text/c4_utils.py``, ``clean_page``).
* :class:`FineWebQualityFilter`: the extra rules of Penedo et al. 2024, "The
  FineWeb Datasets" (arXiv:2406.17557, section 3.3.4).

Where the papers leave a detail open, the semantics follow datatrove's
implementations of the same filters, which produced FineWeb; the differences
are named in each docstring. Words are found with a regular expression instead
of an NLTK tokenizer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from filters import wordlists
from filters.base import Filter
from filters.language import rules_language
from filters.wordlists import (
    DUP_NGRAM_NS,
    SUBSTRING_LANGUAGES,
    TOP_NGRAM_NS,
    UNSEGMENTED,
    count_substrings,
    gopher_profile,
)

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]+")
# A word of a language written without spaces: one Thai, kana or CJK character, or a run of other word characters.
_UNSPACED = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CHAR_WORD = re.compile(f"[{_UNSPACED}]|[^\\W{_UNSPACED}]+(?:['’][^\\W{_UNSPACED}]+)*")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")

STOPWORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BULLETS = ("•", "●", "○", "◦", "▪", "▫", "‣", "⁃", "-", "–", "*")
ELLIPSES = ("...", "…")


def _check_ranges(
    settings: Any,
    non_negative: Sequence[str] = (),
    shares: Sequence[str] = (),
    ordered: Sequence[tuple[str, str]] = (),
) -> None:
    """Refuses settings outside their meaning (``ValueError`` naming the field; NaN fails every check).

    Args:
        settings: the filter.
        non_negative: fields that must be ``>= 0``.
        shares: fields that must lie in ``[0, 1]``; a tuple field is checked element by element.
        ordered: ``(low, high)`` pairs of fields with ``low <= high``.
    """
    for name in non_negative:
        if not getattr(settings, name) >= 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(settings, name)!r}")
    for name in shares:
        value = getattr(settings, name)
        for item in value if isinstance(value, tuple) else (value,):
            if not 0 <= item <= 1:
                raise ValueError(f"{name} must hold shares in [0, 1], got {value!r}")
    for low, high in ordered:
        if getattr(settings, low) > getattr(settings, high):
            raise ValueError(
                f"{low} ({getattr(settings, low)}) must not exceed {high} ({getattr(settings, high)})"
            )


@dataclass(frozen=True)
class GopherQualityFilter(Filter):
    """Gopher's document quality rules (Rae et al. 2021, section A.1.1).

    A document is dropped when it has fewer than 50 or more than 100,000 words, a
    mean word length outside 3..10 characters, more than 0.1 ``#`` or ellipses per
    word, more than 90% of its lines starting with a bullet, more than 30% ending
    with an ellipsis, fewer than 80% of its words holding a letter, or fewer than
    two of the stop words *the, be, to, of, and, that, have, with*.

    Words are runs of word characters (punctuation is not a word); the letter rule
    counts whitespace-separated words, so a trailing comma does not make a word
    non-alphabetic. Stop words are counted per occurrence and case-insensitively
    (datatrove counts occurrences, case-sensitively). Line ratios ignore blank lines.

    Per language (``language: auto``, the default): each document is judged in its detected
    language (:func:`filters.language.rules_language`; English when unsure). English keeps
    the settings below. A language FineWeb-2 tuned (:func:`filters.wordlists.gopher_profile`,
    30 languages) takes FineWeb-2's stop words, mean word length bounds and share of words
    with a letter; any other language takes the settings below with Stopwords ISO's list for
    it (Gopher's English list where there is none). Stop words are also matched as elided
    prefixes (French ``l'`` in ``l'eau``). In Chinese, Japanese and Thai a word is one
    character, so the word count counts characters and the mean word length rule is off;
    there, and in Korean (whose stop words are particles), stop words are counted where they
    occur in the text. The score's ``lang`` names the language used.

    Attributes:
        min_words: fewest words accepted.
        max_words: most words accepted.
        min_mean_word_length: shortest accepted mean word length, in characters.
        max_mean_word_length: longest accepted mean word length, in characters.
        max_symbol_word_ratio: most ``#`` per word, and separately most ellipses per word.
        max_bullet_lines_ratio: largest share of lines starting with a bullet.
        max_ellipsis_lines_ratio: largest share of lines ending with an ellipsis.
        min_alpha_words_ratio: smallest share of words containing a letter.
        min_stopwords: fewest stop-word occurrences accepted.
        stopwords: stop words, lower case, used for every language; empty (the default):
            each language's own list, Gopher's *the, be, to, of, and, that, have, with*
            for English.
        language: ``auto`` (detect each document's language), or one code for every
            document (``en``: the English rules above for all, as before per-language lists).
    """

    name: ClassVar[str] = "gopher_quality"
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stopwords: int = 2
    stopwords: tuple[str, ...] = ()
    language: str = "auto"

    def __post_init__(self) -> None:
        _check_ranges(
            self,
            non_negative=("min_words", "min_mean_word_length", "max_symbol_word_ratio", "min_stopwords"),
            shares=("max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio"),
            ordered=(("min_words", "max_words"), ("min_mean_word_length", "max_mean_word_length")),
        )

    def score(self, record: Any) -> dict[str, Any]:
        text = record.text or ""
        lang = rules_language(text, self.language)
        words = (_CHAR_WORD if lang in UNSEGMENTED else _WORD).findall(text)
        n_words = max(len(words), 1)
        spaced = text.split()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        n_lines = max(len(lines), 1)
        return {
            "lang": lang,
            "words": len(words),
            "mean_word_length": sum(map(len, words)) / n_words,
            "hash_ratio": text.count("#") / n_words,
            "ellipsis_ratio": sum(text.count(e) for e in ELLIPSES) / n_words,
            "bullet_lines": sum(line.startswith(BULLETS) for line in lines) / n_lines,
            "ellipsis_lines": sum(line.endswith(ELLIPSES) for line in lines) / n_lines,
            "alpha_words": sum(any(c.isalpha() for c in w) for w in spaced) / max(len(spaced), 1),
            "stopwords": count_stopwords(text, lang, self.stopwords_for(lang)),
        }

    def keep(self, score: dict[str, Any]) -> tuple[bool, str | None]:
        min_length, max_length, min_alpha = self.thresholds_for(score["lang"])
        if not self.min_words <= score["words"] <= self.max_words:
            return False, "gopher_word_count"
        if not min_length <= score["mean_word_length"] <= max_length:
            return False, "gopher_mean_word_length"
        if max(score["hash_ratio"], score["ellipsis_ratio"]) > self.max_symbol_word_ratio:
            return False, "gopher_symbol_ratio"
        if score["bullet_lines"] > self.max_bullet_lines_ratio:
            return False, "gopher_bullet_lines"
        if score["ellipsis_lines"] > self.max_ellipsis_lines_ratio:
            return False, "gopher_ellipsis_lines"
        if score["alpha_words"] < min_alpha:
            return False, "gopher_alpha_words"
        if score["stopwords"] < self.min_stopwords:
            return False, "gopher_stopwords"
        return True, None

    def stopwords_for(self, lang: str) -> frozenset[str]:
        """The stop words documents in ``lang`` are counted against."""
        if self.stopwords:
            return frozenset(self.stopwords)
        profile = gopher_profile(lang)
        if profile is not None:
            return frozenset(profile.stopwords)
        return (lang != "en" and wordlists.stopwords(lang)) or frozenset(STOPWORDS)

    def thresholds_for(self, lang: str) -> tuple[float, float, float]:
        """``(min_mean_word_length, max_mean_word_length, min_alpha_words_ratio)`` for ``lang``.

        FineWeb-2's where it has the language (a bound of 0 is no bound), these settings elsewhere;
        no word length bounds where a word is a character.
        """
        profile = gopher_profile(lang)
        if profile is None:
            low, high, alpha = self.min_mean_word_length, self.max_mean_word_length, self.min_alpha_words_ratio
        else:
            low, high, alpha = (
                profile.min_mean_word_length, profile.max_mean_word_length or math.inf, profile.min_alpha_words_ratio,
            )
        return (0.0, math.inf, alpha) if lang in UNSEGMENTED else (low, high, alpha)


def count_stopwords(text: str, lang: str, stopwords: frozenset[str]) -> int:
    """Occurrences of ``stopwords`` in ``text``, written in ``lang``, case-insensitively.

    Whole tokens (words and runs of punctuation, ``’`` read as ``'``) and the elided prefixes of
    words with an apostrophe (``l'`` of ``l'eau``); in :data:`~filters.wordlists.SUBSTRING_LANGUAGES`,
    every occurrence in the text.
    """
    if lang in SUBSTRING_LANGUAGES:
        return count_substrings(text, stopwords)
    tokens = [token.lower().replace("’", "'") for token in _TOKEN.findall(text)]
    elided = [token[: token.index("'") + 1] for token in tokens if "'" in token]
    return sum(token in stopwords for token in tokens) + sum(prefix in stopwords for prefix in elided)


@dataclass(frozen=True)
class GopherRepetitionFilter(Filter):
    """Gopher's repetition rules (Rae et al. 2021, section A.1.1 and table A1).

    Paragraphs are separated by blank lines, lines by newlines. A duplicate is an
    element equal to an earlier one; its fraction is counted over elements and its
    character fraction over the characters of the whole text (as in datatrove).

    For n-grams of words (punctuation is not a word) the character fraction is the
    share of the text's characters covered, from the first word's start to the
    last word's end, by: every occurrence of the most frequent n-gram, when it
    occurs more than once (``top_<n>gram``); every occurrence of an n-gram seen
    earlier in the text (``dup_<n>gram``). Overlapping occurrences count their
    characters once, as the paper asks; datatrove approximates this by skipping
    ``n`` words after a duplicate.

    Per language (``language: auto``, the default): each document is judged in its detected
    language (:func:`filters.language.rules_language`; English when unsure). A language
    FineWeb-2 tuned (:func:`filters.wordlists.gopher_profile`, 30 languages) takes FineWeb-2's
    duplicate line fraction and top and duplicate n-gram character fractions (the thresholds
    datatrove's ``GopherRepetitionFilter`` takes as ``dup_line_frac``, ``top_n_grams`` and
    ``dup_n_grams``; the line fraction is counted over lines, as here); the paragraph rules and
    the duplicate line character fraction keep the settings below, which FineWeb-2 switches off
    instead. English and every other language take the settings below. Words are found the
    same way in every language, so in Chinese, Japanese and Thai, written without spaces, a
    word of these rules is a whole run between punctuation marks (FineWeb-2 segments these
    languages with word tokenizers) and the n-gram rules catch only repeated runs. The
    score's ``lang`` names the language used.

    Attributes:
        max_dup_para_fraction: largest share of duplicate paragraphs.
        max_dup_para_chars: largest character share of duplicate paragraphs.
        max_dup_line_fraction: largest share of duplicate lines.
        max_dup_line_chars: largest character share of duplicate lines.
        max_top_ngram_chars: largest character share of the most frequent n-gram,
            for n = 2, 3, 4, ... in order.
        max_dup_ngram_chars: largest character share of duplicate n-grams, for
            n = 5, 6, 7, ... in order.
        language: ``auto`` (detect each document's language), or one code for every
            document (``en``: the settings above for all, as before per-language thresholds).
    """

    name: ClassVar[str] = "gopher_repetition"
    max_dup_para_fraction: float = 0.30
    max_dup_para_chars: float = 0.20
    max_dup_line_fraction: float = 0.30
    max_dup_line_chars: float = 0.20
    max_top_ngram_chars: tuple[float, ...] = (0.20, 0.18, 0.16)
    max_dup_ngram_chars: tuple[float, ...] = (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)
    language: str = "auto"

    def __post_init__(self) -> None:
        _check_ranges(self, shares=(
            "max_dup_para_fraction", "max_dup_para_chars", "max_dup_line_fraction", "max_dup_line_chars",
            "max_top_ngram_chars", "max_dup_ngram_chars",
        ))

    def score(self, record: Any) -> dict[str, Any]:
        text = record.text or ""
        lang = rules_language(text, self.language)
        n_chars = max(len(text), 1)
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        lines = _LINE_BREAK.split(text.strip())
        para_dups, para_dup_chars = _duplicates(paragraphs)
        line_dups, line_dup_chars = _duplicates(lines)
        score: dict[str, Any] = {
            "lang": lang,
            "dup_para_fraction": para_dups / len(paragraphs),
            "dup_para_chars": para_dup_chars / n_chars,
            "dup_line_fraction": line_dups / len(lines),
            "dup_line_chars": line_dup_chars / n_chars,
        }
        matches = list(_WORD.finditer(text))
        starts = np.array([m.start() for m in matches], dtype=np.int64)
        ends = np.array([m.end() for m in matches], dtype=np.int64)
        _, top_limits, dup_limits = self.thresholds_for(lang)
        top_ns, dup_ns = _top_ns(top_limits), _dup_ns(dup_limits)
        for n, labels in _ngram_labels([m.group() for m in matches], max([*top_ns, *dup_ns], default=0)):
            if n in top_ns:
                score[f"top_{n}gram"] = _covered(starts, ends, n, _top_positions(labels)) / n_chars
            if n in dup_ns:
                repeats = np.flatnonzero(labels != np.arange(len(labels)))
                score[f"dup_{n}gram"] = _covered(starts, ends, n, repeats) / n_chars
        return score

    def keep(self, score: dict[str, Any]) -> tuple[bool, str | None]:
        max_dup_line_fraction, top_limits, dup_limits = self.thresholds_for(score["lang"])
        if score["dup_para_fraction"] > self.max_dup_para_fraction:
            return False, "gopher_dup_para_fraction"
        if score["dup_para_chars"] > self.max_dup_para_chars:
            return False, "gopher_dup_para_chars"
        if score["dup_line_fraction"] > max_dup_line_fraction:
            return False, "gopher_dup_line_fraction"
        if score["dup_line_chars"] > self.max_dup_line_chars:
            return False, "gopher_dup_line_chars"
        for n, limit in zip(_top_ns(top_limits), top_limits):
            if score[f"top_{n}gram"] > limit:
                return False, f"gopher_top_{n}gram"
        for n, limit in zip(_dup_ns(dup_limits), dup_limits):
            if score[f"dup_{n}gram"] > limit:
                return False, f"gopher_dup_{n}gram"
        return True, None

    def thresholds_for(self, lang: str) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
        """``(max_dup_line_fraction, max_top_ngram_chars, max_dup_ngram_chars)`` for ``lang``.

        FineWeb-2's where it has the language, these settings elsewhere.
        """
        profile = gopher_profile(lang)
        if profile is None:
            return self.max_dup_line_fraction, self.max_top_ngram_chars, self.max_dup_ngram_chars
        return profile.max_dup_line_fraction, profile.max_top_ngram_chars, profile.max_dup_ngram_chars


def _top_ns(limits: tuple[float, ...]) -> range:
    """The n of the top n-gram rules with these thresholds."""
    return range(TOP_NGRAM_NS.start, TOP_NGRAM_NS.start + len(limits))


def _dup_ns(limits: tuple[float, ...]) -> range:
    """The n of the duplicate n-gram rules with these thresholds."""
    return range(DUP_NGRAM_NS.start, DUP_NGRAM_NS.start + len(limits))


def _duplicates(elements: Sequence[str]) -> tuple[int, int]:
    """How many elements repeat an earlier one, and their total length."""
    seen: set[str] = set()
    count = chars = 0
    for element in elements:
        if element in seen:
            count += 1
            chars += len(element)
        else:
            seen.add(element)
    return count, chars


def _ngram_labels(words: Sequence[str], max_n: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(n, labels)`` for n = 1..max_n: ``labels[i]`` is the position of the
    first occurrence of the n-gram starting at word i (so ``labels[i] < i`` marks a
    repeat). Each level is built from the one below: (n-1)-gram label + next word.
    """
    first: dict[str, int] = {}
    unigrams = np.array([first.setdefault(word, i) for i, word in enumerate(words)], dtype=np.int64)
    labels = unigrams
    for n in range(1, max_n + 1):
        if n > 1:
            keys = labels[:-1] * max(len(words), 1) + unigrams[n - 1 :]
            _, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
            labels = first_index[inverse]
        yield n, labels


def _top_positions(labels: np.ndarray) -> np.ndarray:
    """Positions of the most frequent n-gram, when it occurs more than once."""
    if not len(labels):
        return labels
    counts = np.bincount(labels)
    top = int(np.argmax(counts))
    return np.flatnonzero(labels == top) if counts[top] > 1 else labels[:0]


def _covered(starts: np.ndarray, ends: np.ndarray, n: int, positions: np.ndarray) -> int:
    """Characters in the union of the text ranges of the n-grams at ``positions`` (ascending).

    Range ends grow with the position, so each range adds what lies past the previous end.
    """
    if not len(positions):
        return 0
    begin, end = starts[positions], ends[positions + n - 1]
    reach = np.concatenate(([0], end[:-1]))
    return int(np.maximum(end - np.maximum(begin, reach), 0).sum())


C4_END_MARKS = (".", "!", "?", '"', "'", "”", "’")
C4_POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# Linear: a run of marks is tried once, from its first mark (the lookbehind), and taken
# whole (possessive ``++``/``*+``: a shorter take leaves a mark or closer next, never a space).
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"'”’)\]]*+(?=\s|$)")


@dataclass(frozen=True)
class C4QualityFilter(Filter):
    """C4's page rules (Raffel et al. 2020, section 2.2), as a judgment on the cleaned page.

    The score runs :func:`c4_clean` and reports its counts; a page is dropped when
    it mentions "lorem ipsum", contains a curly bracket, is empty after cleaning,
    or keeps fewer than 5 sentences. Defaults are those of the reference
    ``clean_page`` (``min_words_per_line=3``, ``min_num_sentences=5``,
    ``max_word_length=1000``, citations removed). The bad-words rule is not here.

    A filter never changes its record, so the cleaning is a separate step: after
    this filter keeps a record, the pipeline maps it through
    ``dataclasses.replace(record, text=c4_clean(record.text, settings)[0])`` with
    the same settings object.

    Attributes:
        min_words_per_line: fewest whitespace-separated words a kept line has.
        min_sentences: fewest sentences a kept page has after cleaning.
        max_word_length: lines with a longer word are removed.
        remove_citations: strip Wikipedia marks (``[1]``, ``[edit]``, ``[citation needed]``).
    """

    name: ClassVar[str] = "c4"
    min_words_per_line: int = 3
    min_sentences: int = 5
    max_word_length: int = 1000
    remove_citations: bool = True

    def __post_init__(self) -> None:
        _check_ranges(self, non_negative=("min_words_per_line", "min_sentences", "max_word_length"))

    def score(self, record: Any) -> dict[str, float]:
        return c4_clean(record.text or "", self)[1]

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["lorem_ipsum"]:
            return False, "c4_lorem_ipsum"
        if score["curly_bracket"]:
            return False, "c4_curly_bracket"
        if score["kept_lines"] == 0:
            return False, "c4_empty"
        if score["sentences"] < self.min_sentences:
            return False, "c4_too_few_sentences"
        return True, None


def c4_clean(text: str, settings: C4QualityFilter) -> tuple[str, dict[str, int]]:
    """C4's line cleaning: the kept lines, stripped and joined by newlines, and counts.

    In order, per line (as in the reference ``clean_page``): remove lines with a
    word longer than ``max_word_length``; strip citation marks; remove lines not
    ending in ``. ! ? "`` or a closing quote, or ending in an ellipsis; remove
    lines with fewer than ``min_words_per_line`` words; stop at a line mentioning
    "lorem ipsum" or holding ``{`` (the page is to be dropped: the text returned
    is empty and the flag set); remove lines mentioning "javascript" or a
    cookie/terms-of-use phrase. Sentences are counted on kept lines by terminal
    punctuation followed by a space or the line end (the reference uses NLTK's
    punkt, which also knows abbreviations).

    Args:
        text: the page text.
        settings: the :class:`C4QualityFilter` whose settings apply.

    Returns:
        ``(cleaned_text, counts)``; counts are ``lines``, ``kept_lines``,
        ``sentences``, ``lorem_ipsum`` and ``curly_bracket`` (0 or 1), and the lines
        removed per rule: ``long_word``, ``no_terminal_punct``, ``few_words``,
        ``javascript``, ``policy``.
    """
    counts = dict.fromkeys(
        ("lines", "kept_lines", "sentences", "lorem_ipsum", "curly_bracket", "long_word",
         "no_terminal_punct", "few_words", "javascript", "policy"),
        0,
    )
    kept = []
    for line in text.splitlines():
        counts["lines"] += 1
        line = line.strip()
        words = line.split()
        if any(len(word) > settings.max_word_length for word in words):
            counts["long_word"] += 1
            continue
        if settings.remove_citations:
            line = _CITATION.sub("", line)
        if not line.endswith(C4_END_MARKS) or line.endswith(ELLIPSES):
            counts["no_terminal_punct"] += 1
            continue
        if len(words) < settings.min_words_per_line:
            counts["few_words"] += 1
            continue
        lower = line.lower()
        if "lorem ipsum" in lower:
            counts["lorem_ipsum"] = 1
            return "", counts
        if "javascript" in lower:
            counts["javascript"] += 1
            continue
        if "{" in line:
            counts["curly_bracket"] = 1
            return "", counts
        if any(phrase in lower for phrase in C4_POLICY_PHRASES):
            counts["policy"] += 1
            continue
        counts["sentences"] += max(len(_SENTENCE_END.findall(line)), 1)
        kept.append(line)
    counts["kept_lines"] = len(kept)
    return "\n".join(kept), counts


_FINEWEB_END_MARKS = (".", "'", '"', "!", "?")


@dataclass(frozen=True)
class FineWebQualityFilter(Filter):
    """FineWeb's custom rules (Penedo et al. 2024, section 3.3.4).

    Lines are the text split on every newline (blank lines count). A document is
    dropped when at most 12% of its lines end in terminal punctuation
    (``. ' " ! ?``), at least 67% are at most 30 characters long, duplicate lines
    hold at least 1% of the non-newline characters, or it has more than 0.3
    newlines per word (a list). Comparisons follow datatrove's
    ``FineWebQualityFilter``, the published code; words there come from NLTK and
    include punctuation tokens, as they do here.

    Attributes:
        line_punct_thr: a share of punctuated lines at or below this drops the document.
        line_punct_exclude_zero: spare documents with no punctuated line at all.
        short_line_thr: a share of short lines at or above this drops the document.
        short_line_length: longest line, in characters, that counts as short.
        char_duplicates_ratio: a duplicate-line character share at or above this drops it.
        new_line_ratio: more newlines per word than this drops the document.
    """

    name: ClassVar[str] = "fineweb_quality"
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3

    def __post_init__(self) -> None:
        _check_ranges(
            self,
            non_negative=("short_line_length", "char_duplicates_ratio", "new_line_ratio"),
            shares=("line_punct_thr", "short_line_thr"),
        )

    def score(self, record: Any) -> dict[str, float]:
        text = record.text or ""
        lines = text.split("\n")
        non_empty = [line for line in lines if line.strip()]
        return {
            "line_punct_ratio": sum(line.endswith(_FINEWEB_END_MARKS) for line in lines) / len(lines),
            "short_line_ratio": sum(len(line) <= self.short_line_length for line in lines) / len(lines),
            "char_dup_ratio": _duplicates(non_empty)[1] / max(len(text) - text.count("\n"), 1),
            "list_ratio": text.count("\n") / max(len(_TOKEN.findall(text)), 1),
        }

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        punct = score["line_punct_ratio"]
        if punct <= self.line_punct_thr and not (punct == 0 and self.line_punct_exclude_zero):
            return False, "fineweb_line_punct_ratio"
        if score["short_line_ratio"] >= self.short_line_thr:
            return False, "fineweb_short_line_ratio"
        if score["char_dup_ratio"] >= self.char_duplicates_ratio:
            return False, "fineweb_char_dup_ratio"
        if score["list_ratio"] > self.new_line_ratio:
            return False, "fineweb_list_ratio"
        return True, None
