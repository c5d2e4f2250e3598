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

Two checks hold a caption to what its alt text says: :class:`CaptionCoverageCheck`
(the caption keeps the alt text's content words, matched by lemma and across
British and American spelling) and :class:`CaptionInventedEntityCheck` (the
caption adds no names, numbers or dates that neither the alt text nor the pair's
metadata supports). Lemmas come from ``simplemma`` and spellings from ``breame``
(both pure Python, in the ``captions`` extra), imported on first use.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple
from urllib.parse import unquote, urlsplit

from curation.records import SYNTHETIC_CAPTION_KEY
from filters.base import Filter
from filters.language import MIN_SCORE, detect_language
from filters.web_text import STOPWORDS
from filters.wordlists import stopwords

SYNTHETIC_KEY = SYNTHETIC_CAPTION_KEY
CLIP_ALT_KEY = "clip_score_alt"
CLIP_CAPTION_KEY = "clip_score_caption"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?\n])[\s\"'“‘(\[]*$")
_CJK_CHAR = re.compile(rf"[{_CJK}]")

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
TENS_WORDS = {
    word: 10 * value for value, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
DECADE_WORDS = {
    word: value
    for value, word in enumerate("twenties thirties forties fifties sixties seventies eighties nineties".split(), 2)
}
ORDINAL_WORDS = {
    word: value
    for value, word in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
        "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(),
        1,
    )
}
DATE_NAMES = frozenset(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday".split()
)
VAGUE_NUMBER_WORDS = frozenset({"one"})
"""Number words a caption may use without claiming a count ("one of the", "the one on the left")."""
FILLER_WORDS = frozenset(
    "image images photo photos photograph photographs photographed picture pictures pic pics close up "
    "closeup stock view shot thumbnail img next front".split()
)
"""Alt-text words a caption need not keep: those naming the medium or the framing rather than what is
shown ("photo", "close-up", "view"), and the nouns of the prepositions "next to" and "in front of"."""


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
    return numbers, frozenset(fold(name) for name in _names(text))


def _names(text: str) -> Iterator[str]:
    """The words of ``text`` (NFKC) that look like names, as written (see :func:`alt_text_entities`)."""
    for m in _WORD.finditer(text):
        word = m.group()
        if (
            word[0].isupper()
            and len(word) > 1
            and fold(word) not in FUNCTION_WORDS
            and not _SENTENCE_START.search(text[: m.start()])
        ):
            yield word


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


_LEMMA_LANGUAGES = {"no": "nb"}


@functools.cache
def _lemma_language(lang: str) -> str | None:
    """simplemma's code for ``lang``, or None where it has no dictionary (Chinese, Japanese, ...)."""
    import simplemma

    code = _LEMMA_LANGUAGES.get(lang, lang)
    try:
        simplemma.lemmatize("a", lang=code)
    except ValueError:
        return None
    return code


@functools.lru_cache(maxsize=1 << 16)
def lemma_key(word: str, lang: str = "en") -> str:
    """What a word is matched by: its lemma in ``lang``, folded, in American spelling.

    A number word becomes its digits ("three" is ``3``). The lemma is simplemma's
    dictionary lemma ("cakes" is ``cake``, "served" ``serve``, "typewritten"
    ``typewrite`` and "typewriter" itself; a word it does not know stays as it is),
    then :func:`fold`; last, a British spelling becomes the American one (breame's
    list: "grey" is ``gray``, "colours" ``colors`` then ``color``). A language
    simplemma lacks is matched on folded words.
    """
    from breame.spelling import get_american_spelling

    lowered = unicodedata.normalize("NFKC", word).casefold().replace("’", "'")
    if lowered in NUMBER_WORDS:
        return NUMBER_WORDS[lowered]
    code = _lemma_language(lang)
    if code is not None:
        import simplemma

        lowered = simplemma.lemmatize(lowered, lang=code)
    return get_american_spelling(fold(lowered))


def _stopwords(lang: str) -> frozenset[str]:
    """The function words of ``lang``: :data:`filters.web_text.STOPWORDS` in English (Stopwords ISO's
    English list holds content words such as "mug", "room" and "old"), Stopwords ISO's list elsewhere."""
    return (lang != "en" and stopwords(lang)) or frozenset(STOPWORDS)


def content_words(text: str, lang: str = "en", filler: frozenset[str] = FILLER_WORDS) -> dict[str, str]:
    """The content words of an alt text: ``{lemma_key: word as written}``, first spelling kept.

    Content words approximate nouns, adjectives, verbs and numbers without a
    tagger: every word (:func:`words`) that is not a stop word of ``lang`` (see
    :func:`_stopwords`), not in ``filler`` and not a single letter.
    """
    skip = _stopwords(lang) | filler | FUNCTION_WORDS
    found: dict[str, str] = {}
    for word in words(text):
        lowered = unicodedata.normalize("NFKC", word).casefold().replace("’", "'")
        if lowered in skip or (len(lowered) == 1 and not lowered.isdigit() and not _CJK_CHAR.match(lowered)):
            continue
        found.setdefault(lemma_key(word, lang), word)
    return found


class Coverage(NamedTuple):
    """How much of an alt text a caption keeps.

    Attributes:
        share: the share of the alt text's content words the caption holds (1.0 when it has none).
        content_words: how many content words the alt text has.
        missing: the content words the caption lost, as the alt text writes them.
    """

    share: float
    content_words: int
    missing: list[str]


def coverage(alt_text: str, caption: str, lang: str = "en", filler: frozenset[str] = FILLER_WORDS) -> Coverage:
    """How much of the alt text's content words (:func:`content_words`) the caption holds.

    Words match by :func:`lemma_key`: "cakes" keeps "cake", "gray" keeps "grey",
    "three" keeps "3"; "typewritten" does not keep "typewriter".
    """
    wanted = content_words(alt_text, lang, filler)
    held = {lemma_key(word, lang) for word in words(caption)}
    missing = [word for key, word in wanted.items() if key not in held]
    return Coverage(1.0 - len(missing) / len(wanted) if wanted else 1.0, len(wanted), missing)


def pair_language(alt_text: str, caption: str, setting: str = "auto", min_score: float = MIN_SCORE) -> str:
    """The language whose stop words and lemmas judge a pair.

    ``setting`` unless it is ``"auto"``; then the alt text's detected language when
    sure enough (``min_score``), else the caption's (longer, so surer), else English.
    """
    if setting != "auto":
        return setting
    for text in (alt_text, caption):
        lang, probability = detect_language(text)
        if probability >= min_score:
            return lang
    return "en"


@dataclass(frozen=True)
class CaptionCoverageCheck(Filter):
    """Drops captions that lose what the alt text says.

    The score is :func:`coverage`: the share of the alt text's content words
    (:func:`content_words`) that the caption holds, by lemma, in the language of
    :func:`pair_language`. A caption that drifts off its alt text ("Homemade
    slice of lemon cake served on a grey plate" rewritten as "Serves as a perfect
    example of the art of creative storytelling in food." keeps 1 of 7) fails;
    a faithful one that drops a verb passes ("... sits on a grey ceramic plate"
    keeps 6 of 7).

    The default 0.7 lets a caption lose one content word of four or two of
    seven, not one of three. On SmolLM2-135M's rewrites of demo and web alt texts
    (``bench/bench_caption_checks.py``), 8 of the 11 first captions that passed
    every other check and kept 0.6 to 0.7 had lost what the alt text was about
    ("HCL Logistics" became "HALL Logistics", "Samsung" "Sansaam", the plate of
    "served on a red plate" was gone), 1 only a paraphrased verb ("sitting" told
    as "sat"); from 0.7 to 0.8 losses and paraphrases ("Subscribe" told as
    "Join") were about even.

    Attributes:
        min_coverage: smallest share of content words kept.
        language: ``auto`` (see :func:`pair_language`) or a fixed ISO 639 code.
        min_language_score: smallest detection probability that picks a language.
        filler: alt-text words that need not be kept (lower case).
    """

    name: ClassVar[str] = "caption_coverage"
    min_coverage: float = 0.7
    language: str = "auto"
    min_language_score: float = MIN_SCORE
    filler: tuple[str, ...] = tuple(sorted(FILLER_WORDS))

    def score(self, record: Any) -> dict[str, float]:
        alt, caption = record.text or "", synthetic_caption(record)
        kept = coverage(alt, caption, pair_language(alt, caption, self.language, self.min_language_score),
                        frozenset(self.filler))
        return {"content_words": kept.content_words, "coverage": kept.share}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["coverage"] < self.min_coverage:
            return False, "caption_low_coverage"
        return True, None


_CENTURY = re.compile(
    rf"(?<!\w)(?:(\d{{1,2}})(?:st|nd|rd|th)|({'|'.join(sorted(ORDINAL_WORDS, key=len, reverse=True))}))"
    r"[\s-]+centur(?:y|ies)(?!\w)"
)
_DECADE = re.compile(r"(?<![\w'’])(?:(1\d|20)(\d)0|['’]?(\d)0)['’]?s(?!\w)")
_DIGITS = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*")
_NUMBER_WORD = re.compile(
    rf"(?<![\w-])(?:({'|'.join(TENS_WORDS)})(?:[\s-]({'|'.join(list(NUMBER_WORDS)[1:10])}))?"
    rf"|({'|'.join(sorted(NUMBER_WORDS, key=len, reverse=True))})|({'|'.join(DECADE_WORDS)}))(?![\w-])"
)


def numeric_claims(text: str, vague: frozenset[str] = frozenset()) -> set[tuple]:
    """The numbers, centuries and decades ``text`` states, for comparing texts.

    Claims are ``("number", "1000")`` (digit runs with inner ``.`` or ``,``,
    commas dropped, an ordinal suffix ignored: "1,000", "19th"; English number
    words: "three", "twenty-five"), ``("century", 19)`` ("19th-century",
    "nineteenth century") and ``("decade", 19, 6)`` ("1960s"; ``None`` for the
    century of "'60s", "60s" and "sixties"). Digits inside a word ("a3f9",
    "300" in "400x300") are no number. ``vague`` lists number words that claim
    nothing ("one").
    """
    folded = fold(unicodedata.normalize("NFKC", text))
    claims: set[tuple] = set()

    def cut(match: re.Match[str]) -> str:
        return " " * len(match.group())

    for m in _CENTURY.finditer(folded):
        claims.add(("century", int(m[1]) if m[1] else ORDINAL_WORDS[m[2]]))
    folded = _CENTURY.sub(cut, folded)
    for m in _DECADE.finditer(folded):
        claims.add(("decade", int(m[1]), int(m[2])) if m[1] else ("decade", None, int(m[3])))
    folded = _DECADE.sub(cut, folded)
    claims |= {("number", m.group().replace(",", "")) for m in _DIGITS.finditer(folded)}
    for m in _NUMBER_WORD.finditer(folded):
        if m[1]:
            claims.add(("number", str(TENS_WORDS[m[1]] + int(NUMBER_WORDS[m[2]] if m[2] else 0))))
        elif m[3] and m[3] not in vague:
            claims.add(("number", NUMBER_WORDS[m[3]]))
        elif m[4]:
            claims.add(("decade", None, DECADE_WORDS[m[4]]))
    return claims


def _years(claims: set[tuple]) -> set[int]:
    return {int(c[1]) for c in claims if c[0] == "number" and c[1].isdigit() and 1000 <= int(c[1]) <= 2199}


def _supported(claim: tuple, support: set[tuple]) -> bool:
    """True when ``support`` states ``claim``, or a year in its century or decade."""
    if claim in support:
        return True
    if claim[0] == "century":
        return any((year - 1) // 100 + 1 == claim[1] or year // 100 + 1 == claim[1] for year in _years(support))
    if claim[0] == "decade":
        _, century, tens = claim
        decades = {(c[1], c[2]) for c in support if c[0] == "decade"}
        decades |= {(year // 100, year // 10 % 10) for year in _years(support)}
        return any(t == tens and (century is None or c is None or c == century) for c, t in decades)
    return False


def _describe(claim: tuple) -> str:
    if claim[0] == "number":
        return claim[1]
    if claim[0] == "century":
        return f"{claim[1]}th century"
    return f"{'' if claim[1] is None else claim[1]}{claim[2]}0s"


def metadata_text(record: Any) -> str:
    """What a pair's metadata says: the image URL's path (percent-decoded) and the string values of
    ``meta`` (lists of strings too), the synthetic caption excepted."""
    parts = [unquote(urlsplit(record.url or "").path)]
    for key, value in record.meta.items():
        if key == SYNTHETIC_KEY:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        parts += [item for item in values if isinstance(item, str)]
    return "\n".join(parts)


def invented_entities(caption: str, support: str) -> dict[str, list[str]]:
    """The names, numbers and dates of ``caption`` that ``support`` (alt text and metadata) does not state.

    Names are the caption's words that look like names (as in
    :func:`alt_text_entities`: capitalised, not at a sentence start, not a
    function word): a nationality ("British") or a place counts, a month or day
    name is a date. A name is supported when ``support`` holds the word, folded,
    or its :func:`lemma_key`. Numbers, centuries and decades are
    :func:`numeric_claims` (the number word "one" claims nothing); a century or
    decade is also supported by a year in it ("1890" supports "19th-century").

    Returns:
        ``{"names": [...], "numbers": [...], "dates": [...]}``, each invented item once, as written
        (numbers and dates normalised: ``1000``, ``19th century``, ``1960s``).
    """
    caption = unicodedata.normalize("NFKC", caption)
    support_words = words(unicodedata.normalize("NFKC", support))
    known = {fold(w) for w in support_words} | {lemma_key(w) for w in support_words}
    support_claims = numeric_claims(support)
    invented: dict[str, list[str]] = {"names": [], "numbers": [], "dates": []}
    for name in dict.fromkeys(_names(caption)):
        folded = fold(name)
        if folded in NUMBER_WORDS or folded in TENS_WORDS or folded in known or lemma_key(name) in known:
            continue
        invented["dates" if folded in DATE_NAMES else "names"].append(name)
    for claim in sorted(numeric_claims(caption, VAGUE_NUMBER_WORDS), key=repr):
        if not _supported(claim, support_claims):
            invented["numbers" if claim[0] == "number" else "dates"].append(_describe(claim))
    return invented


@dataclass(frozen=True)
class CaptionInventedEntityCheck(Filter):
    """Drops captions that add names, numbers or dates nothing supports.

    A small model fills a long caption with confident detail: "Close-up of a grey
    vintage typewriter on a kitchen table" became "A vintage typewritten by the
    iconic 19th-century British designer". The score counts the caption's
    :func:`invented_entities` against the alt text and, with ``use_metadata``,
    the pair's :func:`metadata_text` (a name in the page title or the image's file
    name is supported).

    Limits: a name at the start of a sentence is not seen (it cannot be told from
    an ordinary capitalised word), nor are dates written in lower case.

    Attributes:
        max_invented: most invented names, numbers and dates accepted.
        use_metadata: let the URL path and string metadata support entities.
    """

    name: ClassVar[str] = "caption_invented"
    max_invented: int = 0
    use_metadata: bool = True

    def score(self, record: Any) -> dict[str, float]:
        support = record.text or ""
        if self.use_metadata:
            support += "\n" + metadata_text(record)
        found = invented_entities(synthetic_caption(record), support)
        counts = {kind: len(items) for kind, items in found.items()}
        return {**counts, "invented": sum(counts.values())}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        if score["invented"] > self.max_invented:
            return False, "caption_invented_entities"
        return True, None


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

    The order of :func:`default_checks` runs cheap checks first: word counts and
    regular expressions, then those that run the language detector (language,
    then coverage, which also lemmatizes), and the CLIP margin last.
    """

    length: CaptionLengthCheck | None = field(default_factory=CaptionLengthCheck)
    refusal: CaptionRefusalCheck | None = field(default_factory=CaptionRefusalCheck)
    repetition: CaptionRepetitionCheck | None = field(default_factory=CaptionRepetitionCheck)
    entities: CaptionEntityCheck | None = field(default_factory=CaptionEntityCheck)
    invented: CaptionInventedEntityCheck | None = field(default_factory=CaptionInventedEntityCheck)
    language: CaptionLanguageCheck | None = field(default_factory=CaptionLanguageCheck)
    coverage: CaptionCoverageCheck | None = field(default_factory=CaptionCoverageCheck)
    clip_margin: CaptionClipMarginCheck | None = field(default_factory=CaptionClipMarginCheck)


def default_checks(settings: CaptionCheckSettings | None = None) -> list[Filter]:
    """The enabled checks of ``settings`` (all defaults when None): length, refusal,
    repetition, entities, invented entities, language, coverage, CLIP margin."""
    settings = settings or CaptionCheckSettings()
    checks = (
        settings.length,
        settings.refusal,
        settings.repetition,
        settings.entities,
        settings.invented,
        settings.language,
        settings.coverage,
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
