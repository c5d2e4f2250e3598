import dataclasses
import itertools
import random

import pytest

from curation.config import from_mapping
from curation.records import TextDoc
from filters.text_quality import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    c4_clean,
)
from filters.wordlists import gopher_profile
from multilingual_prose import PROSE

CONTENT = """
river mountain village garden teacher student market bridge window morning evening harbor
winter summer forest meadow library kitchen painter doctor engineer traveler story letter
island valley castle station museum theatre orchard farmer baker sailor captain soldier
journey season weather silver golden ancient modern quiet gentle bright narrow distant
careful simple famous common strange yellow purple orange violet crimson walked carried
painted planted visited counted opened closed answered followed watched noticed reached
finished wanted needed learned studied climbed crossed travelled gathered shared offered
cottage lantern blanket pocket basket ladder hammer needle thread pencil candle mirror
harvest festival concert lecture picture chapter document council program journal record
""".split()
FUNCTION = "the of and to with that have be a in on for was is from by".split()
STOPWORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
SHORT = "a an it is to of be the and we".split()
LONG = """
internationalization characteristically representational administratively incomprehensibility
telecommunications counterintuitively institutionalization unconstitutionally responsibilities
""".split()


def doc(text):
    return TextDoc(id="d", source="test", url="", text=text)


def words(rng, n):
    """Random words, 60% content words and 40% function words (stop words among them)."""
    return [rng.choice(CONTENT) if rng.random() < 0.6 else rng.choice(FUNCTION) for _ in range(n)]


def sentence(rng):
    ws = words(rng, rng.randint(8, 14))
    return " ".join([ws[0].capitalize(), *ws[1:]]) + "."


def line(rng, sentences=2):
    return " ".join(sentence(rng) for _ in range(sentences))


def lines(rng, n, sentences=2):
    return [line(rng, sentences) for _ in range(n)]


def base(rng):
    return "\n".join(lines(rng, 10))


def n_words_text(rng, n, vocab=None):
    ws = [rng.choice(vocab) for _ in range(n)] if vocab else words(rng, n)
    return " ".join(ws) + "."


def verdict(flt, text):
    record = doc(text)
    result = flt(record)
    assert record.text == text
    return result


# --- Gopher quality ---------------------------------------------------------------------------


def with_hashtags(rng, per_word):
    ws = words(rng, 200)
    tags = [f"#{rng.choice(CONTENT)}" for _ in range(int(per_word * 200))]
    return " ".join(ws + tags) + "."


def with_ellipses(rng, per_word):
    ws = words(rng, 200)
    for i in range(0, 200, int(1 / per_word)):
        ws[i] += "..."
    return " ".join(ws) + "."


def with_bullets(rng, bulleted, marker="- "):
    return "\n".join(marker + text if i < bulleted else text for i, text in enumerate(lines(rng, 10)))


def with_end_ellipses(rng, ending):
    return "\n".join(text[:-1] + "..." if i < ending else text for i, text in enumerate(lines(rng, 10)))


def with_numbers(rng, per_word):
    ws = words(rng, 200)
    numbers = [str(rng.randint(1000, 9999)) for _ in range(int(per_word * 200))]
    return " ".join(ws + numbers) + "."


def with_stopwords(rng, count):
    content = [w for w in CONTENT if w not in STOPWORDS]
    return " ".join([rng.choice(content) for _ in range(80)] + ["the"] * count) + "."


GOPHER_QUALITY_CASES = [
    (base, None),
    (lambda rng: n_words_text(rng, 50), None),
    (lambda rng: n_words_text(rng, 49), "gopher_word_count"),
    (lambda rng: n_words_text(rng, 100_000), None),
    (lambda rng: n_words_text(rng, 100_001), "gopher_word_count"),
    (lambda rng: n_words_text(rng, 80, SHORT), "gopher_mean_word_length"),
    (lambda rng: n_words_text(rng, 80, LONG + ["the", "of"]), "gopher_mean_word_length"),
    (lambda rng: with_hashtags(rng, 0.05), None),
    (lambda rng: with_hashtags(rng, 0.2), "gopher_symbol_ratio"),
    (lambda rng: with_ellipses(rng, 0.05), None),
    (lambda rng: with_ellipses(rng, 0.2), "gopher_symbol_ratio"),
    (lambda rng: with_bullets(rng, 9), None),
    (lambda rng: with_bullets(rng, 10), "gopher_bullet_lines"),
    (lambda rng: with_bullets(rng, 10, "• "), "gopher_bullet_lines"),
    (lambda rng: with_end_ellipses(rng, 3), None),
    (lambda rng: with_end_ellipses(rng, 4), "gopher_ellipsis_lines"),
    (lambda rng: with_numbers(rng, 0.2), None),
    (lambda rng: with_numbers(rng, 0.35), "gopher_alpha_words"),
    (lambda rng: with_stopwords(rng, 2), None),
    (lambda rng: with_stopwords(rng, 1), "gopher_stopwords"),
]


@pytest.mark.parametrize("build, reason", GOPHER_QUALITY_CASES)
def test_gopher_quality_rules(build, reason):
    result = verdict(GopherQualityFilter(), build(random.Random(0)))
    assert (result.keep, result.reason) == (reason is None, reason)


def test_gopher_quality_scores_and_stats():
    text = "#tag The cat sat with the dog...\n- A list item, with 12 numbers.\n\n"
    record = doc(text)
    score = GopherQualityFilter()(record).score
    assert score["words"] == 13  # tag The cat sat with the dog A list item with 12 numbers
    assert score["hash_ratio"] == score["ellipsis_ratio"] == pytest.approx(1 / 13)
    assert score["bullet_lines"] == score["ellipsis_lines"] == 0.5  # the blank lines are ignored
    assert score["alpha_words"] == pytest.approx(12 / 14)  # "-" and "12" have no letter; "dog..." has
    assert score["mean_word_length"] == pytest.approx(44 / 13)
    assert score["stopwords"] == 4  # The, with, the, with
    assert record.stats["gopher_quality.words"] == 13


def test_gopher_quality_empty_text():
    assert verdict(GopherQualityFilter(), "").reason == "gopher_word_count"


# --- Gopher repetition ------------------------------------------------------------------------


def dup_paragraphs(rng, repeats):
    paragraphs = ["\n".join(lines(rng, 2)) for _ in range(6)]
    for i in range(repeats):
        paragraphs.insert(1 + 2 * i, "Thanks for reading.")
    return "\n\n".join(paragraphs)


def dup_paragraph_chars(rng, paragraph_lines):
    paragraphs = lines(rng, 12)
    repeated = "\n".join(lines(rng, paragraph_lines))
    paragraphs[2:2] = [repeated]
    paragraphs[9:9] = [repeated]
    return "\n\n".join(paragraphs)


def dup_lines(rng, repeats):
    text = lines(rng, 10)
    for i in range(repeats):
        text.insert(1 + 2 * i, "Read more below.")
    return "\n".join(text)


def dup_line_chars(rng, sentences):
    text = lines(rng, 6)
    repeated = line(rng, sentences)
    text[1:1] = [repeated]
    text[5:5] = [repeated]
    return "\n".join(text)


def insert_phrase(rng, phrase, times, n_lines=10):
    text = [line(rng).split() for _ in range(n_lines)]
    for _ in range(times):
        target = rng.choice(text)
        target.insert(rng.randint(1, len(target) - 1), phrase)
    return "\n".join(" ".join(ws) for ws in text)


REPETITION_CASES = [
    (base, None),
    (lambda rng: dup_paragraphs(rng, 4), None),
    (lambda rng: dup_paragraphs(rng, 5), "gopher_dup_para_fraction"),
    (lambda rng: dup_paragraph_chars(rng, 1), None),
    (lambda rng: dup_paragraph_chars(rng, 6), "gopher_dup_para_chars"),
    (lambda rng: dup_lines(rng, 5), None),
    (lambda rng: dup_lines(rng, 6), "gopher_dup_line_fraction"),
    (lambda rng: dup_line_chars(rng, 1), None),
    (lambda rng: dup_line_chars(rng, 8), "gopher_dup_line_chars"),
    (lambda rng: insert_phrase(rng, "solar panel", 10), None),
    (lambda rng: insert_phrase(rng, "solar panel", 57), "gopher_top_2gram"),
    (lambda rng: insert_phrase(rng, "green energy policy", 5), None),
    (lambda rng: insert_phrase(rng, "green energy policy", 24), "gopher_top_3gram"),
    (lambda rng: insert_phrase(rng, "local water supply system", 5), None),
    (lambda rng: insert_phrase(rng, "local water supply system", 14), "gopher_top_4gram"),
]


@pytest.mark.parametrize("build, reason", REPETITION_CASES)
def test_gopher_repetition_rules(build, reason):
    result = verdict(GopherRepetitionFilter(), build(random.Random(1)))
    assert (result.keep, result.reason) == (reason is None, reason)


DUP_LIMITS = dict(zip(range(5, 11), GopherRepetitionFilter().max_dup_ngram_chars))


def repeated_passage(rng, coverage):
    """Unique lines with one passage inserted twice, sized so its second copy covers ``coverage``."""
    filler = [line(rng).split() for _ in range(30)]
    pool = words(rng, 400)

    def build(m):
        first, second = [list(ws) for ws in filler[:2]]
        first[4:4] = pool[:m]
        second[4:4] = pool[:m]
        text = "\n".join(" ".join(ws) for ws in [first, *filler[2:15], second, *filler[15:]])
        return text, len(" ".join(pool[:m])) / len(text)

    return min((build(m) for m in range(10, 400)), key=lambda built: abs(built[1] - coverage))


@pytest.mark.parametrize("n", range(5, 11))
def test_gopher_duplicate_ngram_rules(n):
    upper = DUP_LIMITS.get(n - 1, 0.17)
    text, coverage = repeated_passage(random.Random(n), (DUP_LIMITS[n] + upper) / 2)
    result = verdict(GopherRepetitionFilter(), text)
    assert result.reason == f"gopher_dup_{n}gram"
    for m in range(5, 11):
        assert result.score[f"dup_{m}gram"] == pytest.approx(coverage)


def test_gopher_duplicate_ngram_below_limits_passes():
    text, coverage = repeated_passage(random.Random(3), 0.08)
    result = verdict(GopherRepetitionFilter(), text)
    assert result.keep and result.score["dup_10gram"] == pytest.approx(coverage)


def test_gopher_ngram_overlaps_count_once():
    text = " ".join(["go"] * 20)  # 59 characters
    score = GopherRepetitionFilter().score(doc(text))
    assert score["top_2gram"] == 1.0  # 19 overlapping "go go" cover the text once
    # every later n-gram repeats the first: words 2..20 are covered, once
    assert score["dup_5gram"] == score["dup_10gram"] == pytest.approx(56 / 59)


def test_gopher_repetition_line_and_paragraph_scores():
    text = "alpha beta.\n\nalpha beta.\ngamma delta.\n\n\nalpha beta."
    score = GopherRepetitionFilter().score(doc(text))
    assert score["dup_para_fraction"] == pytest.approx(1 / 3)  # the last paragraph repeats the first
    assert score["dup_para_chars"] == pytest.approx(11 / len(text))
    assert score["dup_line_fraction"] == pytest.approx(2 / 4)
    assert score["dup_line_chars"] == pytest.approx(22 / len(text))
    assert score["top_2gram"] == pytest.approx(30 / len(text))  # "alpha beta", three times
    english = GopherRepetitionFilter(max_top_ngram_chars=(), max_dup_ngram_chars=(), language="en")
    assert english.score(doc(text)).keys() == {
        "lang", "dup_para_fraction", "dup_para_chars", "dup_line_fraction", "dup_line_chars"
    }


def test_gopher_repetition_thresholds_come_from_config():
    data = {"max_top_ngram_chars": [0.5, 0.4], "max_dup_ngram_chars": [0.3]}
    flt = from_mapping(GopherRepetitionFilter, data)
    assert flt.max_top_ngram_chars == (0.5, 0.4) and flt.max_dup_ngram_chars == (0.3,)
    score = flt.score(doc(base(random.Random(0))))
    assert {"top_2gram", "top_3gram", "dup_5gram"} <= score.keys() and "top_4gram" not in score
    hash(flt)


# --- Gopher repetition per language -----------------------------------------------------------

ENGLISH_REPETITION = GopherRepetitionFilter(language="en")
CATALAN = (
    "La ciutat es troba a la vora d'un riu ample, a uns quaranta quilòmetres de la costa. Va ser fundada al "
    "segle dotze per mercaders que venien sal i llana a les ciutats del nord. Avui té gairebé vint mil "
    "habitants. El centre antic, amb els seus carrers estrets i un pont de pedra que ha resistit diverses "
    "riuades, atrau molts visitants a l'estiu. La ciutat també té una petita universitat, un museu d'història "
    "local i un mercat que se celebra cada dissabte a la plaça major. Quan la meva àvia era jove, anava a "
    "l'escola a peu cada matí, fins i tot a l'hivern, quan la neu era alta. Ens explicava que el mestre "
    "encenia l'estufa abans que arribessin els nens. Cadascun d'ells portava un tros de llenya de casa. Al "
    "vespre ajudava la seva mare a la cuina i llegia llibres a la llum d'un llum. Diu que mai no s'avorria, "
    "perquè sempre hi havia alguna cosa a fer."
)


def with_repeated_lines(prose, repeated, times):
    """One sentence of ``prose`` a line, with the line ``repeated`` after the first ``times + 1`` of them."""
    sentences = [sentence.strip() + "." for sentence in prose.split(". ") if sentence.strip()]
    for i in range(times + 1):
        sentences.insert(2 * i + 1, repeated)
    return "\n".join(sentences)


def with_phrase(prose, phrase, times):
    """``prose`` with ``phrase`` inserted before every seventh word, ``times`` times."""
    words = prose.split()
    for i in reversed(range(times)):
        words.insert(7 * i + 3, phrase)
    return " ".join(words)


def with_passage_again(first, second, words):
    """``first`` and ``second`` as two paragraphs, with the first ``words`` words of ``first`` again at the end."""
    return f"{first}\n\n{second} " + " ".join(first.split()[:words])


def between(build, sizes, key, low, high):
    """The text ``build(size)`` whose ``key`` score lies nearest the middle of ``(low, high)``, checked inside."""
    scored = [(text, ENGLISH_REPETITION.score(doc(text))[key]) for text in map(build, sizes)]
    text, value = min(scored, key=lambda item: abs(item[1] - (low + high) / 2))
    assert low < value < high, (key, value)
    return text


def test_german_documents_are_judged_with_fineweb2_german_thresholds():
    german, english = gopher_profile("de"), ENGLISH_REPETITION
    assert german.max_dup_line_fraction < english.max_dup_line_fraction
    assert german.max_top_ngram_chars[0] < english.max_top_ngram_chars[0]
    cases = {
        "gopher_dup_line_fraction": between(
            lambda k: with_repeated_lines(PROSE["de"][0] + " " + PROSE["de"][1], "Mehr lesen.", k), range(1, 8),
            "dup_line_fraction", german.max_dup_line_fraction, english.max_dup_line_fraction,
        ),
        "gopher_top_2gram": between(
            lambda k: with_phrase("\n\n".join(PROSE["de"]), "alten Brücke", k), range(5, 25),
            "top_2gram", german.max_top_ngram_chars[0], english.max_top_ngram_chars[0],
        ),
    }
    for reason, text in cases.items():
        judged = verdict(GopherRepetitionFilter(), text)
        assert judged.score["lang"] == "de"
        assert (judged.keep, judged.reason) == (False, reason)
        as_english = verdict(GopherRepetitionFilter(language="en"), text)
        assert as_english.score["lang"] == "en" and (as_english.keep, as_english.reason) == (True, None)
        pinned = from_mapping(GopherRepetitionFilter, {"language": "en"})
        assert pinned == GopherRepetitionFilter(language="en") and verdict(pinned, text).keep


def test_looser_fineweb2_thresholds_keep_what_english_drops():
    korean, english = gopher_profile("ko").max_dup_ngram_chars, ENGLISH_REPETITION.max_dup_ngram_chars
    assert min(korean) > min(english)
    text = between(lambda m: with_passage_again(*PROSE["ko"], m), range(3, 20), "dup_10gram", min(english), min(korean))
    judged = verdict(GopherRepetitionFilter(), text)
    assert judged.score["lang"] == "ko" and judged.keep
    coverage = judged.score["dup_10gram"]
    first_broken = next(n for n, limit in zip(range(5, 11), english) if coverage > limit)
    assert verdict(GopherRepetitionFilter(language="en"), text).reason == f"gopher_dup_{first_broken}gram"


def test_languages_without_fineweb2_thresholds_keep_the_settings():
    defaults = ENGLISH_REPETITION
    english = (defaults.max_dup_line_fraction, defaults.max_top_ngram_chars, defaults.max_dup_ngram_chars)
    assert defaults.thresholds_for("en") == defaults.thresholds_for("ca") == english
    german = gopher_profile("de")
    assert defaults.thresholds_for("de") == (0.263, german.max_top_ngram_chars, german.max_dup_ngram_chars)
    custom = GopherRepetitionFilter(max_dup_line_fraction=0.5, max_top_ngram_chars=(0.3,))
    assert custom.thresholds_for("ca") == (0.5, (0.3,), defaults.max_dup_ngram_chars)
    assert custom.thresholds_for("de")[0] == 0.263  # FineWeb-2's languages keep FineWeb-2's thresholds
    # as many repeated lines as drop the German text above: Catalan is judged with the English threshold
    text = between(
        lambda k: with_repeated_lines(CATALAN, "Llegiu-ne més.", k), range(1, 8),
        "dup_line_fraction", gopher_profile("de").max_dup_line_fraction, defaults.max_dup_line_fraction,
    )
    judged = verdict(GopherRepetitionFilter(), text)
    assert judged.score["lang"] == "ca" and judged.keep
    assert verdict(GopherRepetitionFilter(language="de"), text).reason == "gopher_dup_line_fraction"


# --- C4 ---------------------------------------------------------------------------------------

GOOD = [
    "The river runs past the old mill and into the valley.",
    "Farmers gather there every morning to sell fresh bread. It sells out by noon!",
    "Why does the bridge close in winter?",
    'The mayor said "the road will reopen soon."',
    "She called it \u201cthe best market in the county.\u201d",
]


def test_c4_clean_removes_the_right_lines():
    page = "\n".join(
        [
            "Home | About | Contact",  # no terminal punctuation
            GOOD[0],
            "Thanks!",  # fewer than 3 words
            GOOD[1],
            "Please enable JavaScript to view the comments.",
            "  " + GOOD[2] + "  ",
            "Read our privacy policy before you sign up.",
            "This site uses cookies to improve your visit.",
            "And then the story went on and on...",  # an ellipsis is not an end
            "A line with " + "x" * 1001 + " in it.",
            GOOD[3],
            "The mill was built in 1820.[1]",  # the citation is stripped
            GOOD[4],
        ]
    )
    cleaned, counts = c4_clean(page, C4QualityFilter())
    assert cleaned.split("\n") == [GOOD[0], GOOD[1], GOOD[2], GOOD[3], "The mill was built in 1820.", GOOD[4]]
    assert counts == {
        "lines": 13, "kept_lines": 6, "sentences": 7, "lorem_ipsum": 0, "curly_bracket": 0,
        "long_word": 1, "no_terminal_punct": 2, "few_words": 1, "javascript": 1, "policy": 2,
    }


def test_c4_clean_settings():
    page = "Two words.\nThree words here.\nA cited claim.[2]"
    cleaned = "Three words here.\nA cited claim."
    assert c4_clean(page, C4QualityFilter())[0] == cleaned
    assert c4_clean(page, C4QualityFilter(min_words_per_line=2))[0] == "Two words.\n" + cleaned
    assert c4_clean(page, C4QualityFilter(remove_citations=False))[0] == "Three words here."


@pytest.mark.parametrize(
    "page, reason",
    [
        ("\n".join(GOOD), None),
        ("\n".join(GOOD[:4]), None),  # 5 sentences
        ("\n".join(GOOD[:3]), "c4_too_few_sentences"),  # 4 sentences
        ("\n".join(GOOD + ["Lorem ipsum dolor sit amet, consectetur adipiscing elit."]), "c4_lorem_ipsum"),
        ("\n".join(GOOD + ["The function body is written as { return x; }."]), "c4_curly_bracket"),
        ("Lorem ipsum dolor\n{ json }\nNav | Menu", "c4_empty"),  # no line qualifies: no drop flags
        ("", "c4_empty"),
    ],
)
def test_c4_filter_reasons(page, reason):
    result = verdict(C4QualityFilter(), page)
    assert (result.keep, result.reason) == (reason is None, reason)


def test_c4_filter_on_generated_page_and_stats():
    record = doc(base(random.Random(2)))
    result = C4QualityFilter()(record)
    assert result.keep
    assert record.stats["c4.sentences"] == 20 and record.stats["c4.kept_lines"] == 10


def test_c4_doc_drop_returns_empty_text():
    cleaned, counts = c4_clean("\n".join(GOOD + ["The loop { runs } forever.", GOOD[0]]), C4QualityFilter())
    assert cleaned == "" and counts["curly_bracket"] == 1


# --- FineWeb ----------------------------------------------------------------------------------


def punctuated(rng, ending):
    return "\n".join(text if i < ending else text[:-1] for i, text in enumerate(lines(rng, 10)))


def short_lines(rng, short):
    short_texts = [f"{rng.choice(CONTENT).capitalize()} {rng.choice(CONTENT)} {i}." for i in range(short)]
    return "\n".join(lines(rng, 10 - short) + short_texts)


def duplicate_line(rng, repeated):
    text = lines(rng, 20)
    text.insert(5, repeated)
    text.insert(15, repeated)
    return "\n".join(text)


def listy(rng, words_per_line):
    unique_lines = rng.sample(list(itertools.permutations(LONG, words_per_line)), 20)
    return "\n".join(" ".join(ws) + "." for ws in unique_lines)


FINEWEB_CASES = [
    (base, None),
    (lambda rng: punctuated(rng, 2), None),
    (lambda rng: punctuated(rng, 1), "fineweb_line_punct_ratio"),
    (lambda rng: short_lines(rng, 6), None),
    (lambda rng: short_lines(rng, 7), "fineweb_short_line_ratio"),
    (lambda rng: duplicate_line(rng, "Share this."), None),
    (lambda rng: duplicate_line(rng, line(rng)), "fineweb_char_dup_ratio"),
    (lambda rng: listy(rng, 4), None),
    (lambda rng: listy(rng, 2), "fineweb_list_ratio"),
]


@pytest.mark.parametrize("build, reason", FINEWEB_CASES)
def test_fineweb_rules(build, reason):
    result = verdict(FineWebQualityFilter(), build(random.Random(4)))
    assert (result.keep, result.reason) == (reason is None, reason)


def test_fineweb_scores():
    text = "A first line that is long enough to count.\nshort\n\nA first line that is long enough to count."
    score = FineWebQualityFilter().score(doc(text))
    assert score["line_punct_ratio"] == 0.5
    assert score["short_line_ratio"] == 0.5  # "short" and the blank line
    assert score["char_dup_ratio"] == pytest.approx(42 / (len(text) - 3))
    assert score["list_ratio"] == pytest.approx(3 / 21)  # 10 words and "." per long line, plus "short"


def test_fineweb_exclude_zero_spares_unpunctuated_documents():
    text = "\n".join(text[:-1] for text in lines(random.Random(5), 10))
    assert verdict(FineWebQualityFilter(), text).reason == "fineweb_line_punct_ratio"
    assert verdict(FineWebQualityFilter(line_punct_exclude_zero=True), text).keep


# --- published defaults -----------------------------------------------------------------------


def settings(cls):
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_published_defaults():
    assert settings(GopherQualityFilter) == {
        "min_words": 50, "max_words": 100_000, "min_mean_word_length": 3, "max_mean_word_length": 10,
        "max_symbol_word_ratio": 0.1, "max_bullet_lines_ratio": 0.9, "max_ellipsis_lines_ratio": 0.3,
        "min_alpha_words_ratio": 0.8, "min_stopwords": 2, "stopwords": (), "language": "auto",
    }
    assert GopherQualityFilter().stopwords_for("en") == {"the", "be", "to", "of", "and", "that", "have", "with"}
    assert settings(GopherRepetitionFilter) == {
        "max_dup_para_fraction": 0.3, "max_dup_para_chars": 0.2, "max_dup_line_fraction": 0.3,
        "max_dup_line_chars": 0.2, "max_top_ngram_chars": (0.2, 0.18, 0.16),
        "max_dup_ngram_chars": (0.15, 0.14, 0.13, 0.12, 0.11, 0.10), "language": "auto",
    }
    assert settings(C4QualityFilter) == {
        "min_words_per_line": 3, "min_sentences": 5, "max_word_length": 1000, "remove_citations": True,
    }
    assert settings(FineWebQualityFilter) == {
        "line_punct_thr": 0.12, "line_punct_exclude_zero": False, "short_line_thr": 0.67,
        "short_line_length": 30, "char_duplicates_ratio": 0.01, "new_line_ratio": 0.3,
    }
