"""Word lists per language for the text quality rules, all from maintained sources.

Languages are the lid.176 codes of :mod:`filters.language`. English keeps each rule's own
published list (Gopher's eight stop words, OBELICS's lists in :mod:`filters.web_text`); the
other languages get:

* :func:`gopher_profile`: Gopher's stop words, word-length and letter thresholds and repetition
  thresholds from FineWeb-2's per-language configs (Penedo et al. 2025, arXiv:2506.20920;
  ODC-By 1.0), copied for 30 languages into ``filters/data/fineweb2_gopher.yaml``, which names
  each source file.
* :func:`stopwords`: the ``stopwordsiso`` package (Stopwords ISO, MIT licence), for OBELICS's
  share-of-stop-words rule.
* :func:`flagged_words`: the ``glin-profanity`` package's dictionaries (MIT licence; its lists
  are those of LDNOOBW, the "List of Dirty, Naughty, Obscene and Otherwise Bad Words" that C4
  used), for OBELICS's flagged-word rule, in 24 languages.
* :func:`stopword_share` and :func:`common_words`: the ``wordfreq`` package (code Apache-2.0,
  data CC BY-SA 4.0): how much of a language's running text a stop-word list covers, which
  scales OBELICS's stop-word threshold from English to the language, and the language's most
  frequent words, for OBELICS's common-word rule.

Each list is read once per process. In the languages of :data:`UNSEGMENTED` words are not
separated by spaces, and Korean attaches its particles (FineWeb-2's Korean stop words) to the
word before them: for the four languages of :data:`SUBSTRING_LANGUAGES` a list's entries are
counted where they occur in the text, not as whole words.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

import yaml

UNSEGMENTED = frozenset({"zh", "ja", "th"})
"""Languages written without spaces between words: a word of the Gopher rules is one character."""

SUBSTRING_LANGUAGES = UNSEGMENTED | {"ko"}
"""Languages whose list entries are counted as substrings of the text."""

_GLIN_NAMES = {
    "ar": "arabic", "cs": "czech", "da": "danish", "de": "german", "en": "english", "eo": "esperanto",
    "es": "spanish", "fa": "persian", "fi": "finnish", "fr": "french", "hi": "hindi", "hu": "hungarian",
    "it": "italian", "ja": "japanese", "ko": "korean", "nl": "dutch", "no": "norwegian", "pl": "polish",
    "pt": "portuguese", "ru": "russian", "sv": "swedish", "th": "thai", "tr": "turkish", "zh": "chinese",
}


TOP_NGRAM_NS = range(2, 5)
"""The n of Gopher's top n-gram rules, as FineWeb-2 lists them (``top_n_grams``)."""

DUP_NGRAM_NS = range(5, 11)
"""The n of Gopher's duplicate n-gram rules, as FineWeb-2 lists them (``dup_n_grams``)."""


@dataclass(frozen=True)
class GopherProfile:
    """FineWeb-2's Gopher quality and repetition settings for one language.

    Attributes:
        config: the FineWeb-2 config file they come from (``deu_Latn``).
        stopwords: the language's stop words, lower case.
        min_mean_word_length: shortest accepted mean word length (0: no bound).
        max_mean_word_length: longest accepted mean word length (0: no bound).
        min_alpha_words_ratio: smallest share of words holding a letter.
        max_dup_line_fraction: largest share of lines repeating an earlier line (``dup_line_frac``).
        max_top_ngram_chars: largest character share of the most frequent n-gram, for the n of
            :data:`TOP_NGRAM_NS` in order (``top_n_grams``).
        max_dup_ngram_chars: largest character share of repeated n-grams, for the n of
            :data:`DUP_NGRAM_NS` in order (``dup_n_grams``).
    """

    config: str
    stopwords: tuple[str, ...]
    min_mean_word_length: float
    max_mean_word_length: float
    min_alpha_words_ratio: float
    max_dup_line_fraction: float
    max_top_ngram_chars: tuple[float, ...]
    max_dup_ngram_chars: tuple[float, ...]


def _ngram_limits(pairs: list[list[float]], ns: range, field: str, config: str) -> tuple[float, ...]:
    """The shares of FineWeb-2's ``[n, share]`` pairs, which must list exactly the n of ``ns`` in order."""
    if [n for n, _ in pairs] != list(ns):
        raise ValueError(f"{config}: {field} must list n = {ns.start}..{ns.stop - 1}, got {pairs!r}")
    return tuple(share for _, share in pairs)


@functools.cache
def _fineweb2() -> dict[str, GopherProfile]:
    text = resources.files("filters").joinpath("data/fineweb2_gopher.yaml").read_text(encoding="utf-8")
    return {
        lang: GopherProfile(
            config=entry["config"],
            stopwords=tuple(word.lower() for word in entry["stopwords"]),
            min_mean_word_length=entry["min_avg_word_length"],
            max_mean_word_length=entry["max_avg_word_length"],
            min_alpha_words_ratio=entry["max_non_alpha_words_ratio"],
            max_dup_line_fraction=entry["dup_line_frac"],
            max_top_ngram_chars=_ngram_limits(entry["top_n_grams"], TOP_NGRAM_NS, "top_n_grams", entry["config"]),
            max_dup_ngram_chars=_ngram_limits(entry["dup_n_grams"], DUP_NGRAM_NS, "dup_n_grams", entry["config"]),
        )
        for lang, entry in yaml.safe_load(text).items()
    }


def gopher_profile(lang: str) -> GopherProfile | None:
    """FineWeb-2's Gopher settings for ``lang``, or ``None`` where it has none here (English included)."""
    return _fineweb2().get(lang)


def gopher_languages() -> frozenset[str]:
    """The languages :func:`gopher_profile` knows."""
    return frozenset(_fineweb2())


@functools.cache
def stopwords(lang: str) -> frozenset[str]:
    """Stopwords ISO's list for ``lang``, lower case, ``'`` for apostrophes (empty where it has none)."""
    import stopwordsiso

    if not stopwordsiso.has_lang(lang):
        return frozenset()
    return frozenset(word.lower().replace("’", "'") for word in stopwordsiso.stopwords(lang))


@functools.cache
def flagged_words(lang: str) -> frozenset[str]:
    """glin-profanity's (LDNOOBW's) list for ``lang``, lower case (empty where it has none).

    The JSON files are read from the installed package without importing it.
    """
    name = _GLIN_NAMES.get(lang)
    spec = find_spec("glin_profanity")
    if name is None or spec is None or not spec.submodule_search_locations:
        return frozenset()
    path = Path(spec.submodule_search_locations[0], "data", "dictionaries", f"{name}.json")
    return frozenset(word.lower() for word in json.loads(path.read_text(encoding="utf-8"))["words"])


_WORDFREQ_CODES = {"no": "nb"}


def _wordfreq_code(lang: str) -> str | None:
    """wordfreq's code for ``lang``, or ``None`` where it has no word list."""
    import wordfreq

    code = _WORDFREQ_CODES.get(lang, lang)
    return code if code in wordfreq.available_languages() else None


@functools.cache
def stopword_share(lang: str, words: frozenset[str]) -> float | None:
    """The share of running text in ``lang`` that ``words`` cover, by wordfreq's frequencies.

    The sum of the frequencies of the entries that are single words (only those can match a
    word); ``None`` where wordfreq has no list for ``lang``.
    """
    import wordfreq

    code = _wordfreq_code(lang)
    if code is None:
        return None
    return sum(wordfreq.word_frequency(word, code) for word in words if " " not in word)


@functools.cache
def common_words(lang: str, top: int) -> frozenset[str]:
    """The ``top`` most frequent words of ``lang`` in wordfreq (empty where it has no list)."""
    import wordfreq

    code = _wordfreq_code(lang)
    if code is None:
        return frozenset()
    return frozenset(word.replace("’", "'") for word in wordfreq.top_n_list(code, top))


@functools.cache
def substring_pattern(words: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern matching any of ``words``, longest first (so matches do not overlap); ``None`` if empty."""
    if not words:
        return None
    return re.compile("|".join(map(re.escape, sorted(words, key=lambda w: (-len(w), w)))))


def count_substrings(text: str, words: frozenset[str]) -> int:
    """Non-overlapping occurrences of any of ``words`` in ``text`` (lower-cased)."""
    pattern = substring_pattern(words)
    return len(pattern.findall(text.lower())) if pattern else 0
