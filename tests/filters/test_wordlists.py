"""Quality rules per language: the lists each language gets, and drop rates on comparable prose."""

import pytest

from curation.records import InterleavedDoc, Segment, TextDoc
from filters import wordlists
from filters.language import rules_language
from filters.text_quality import GopherQualityFilter, GopherRepetitionFilter, count_stopwords
from filters.web_text import FLAGGED_WORDS, TextRules, WebTextQualityFilter, filter_paragraphs
from multilingual_prose import PROSE

# The 20 most frequent languages of Common Crawl and a few more, as lid.176 spells them.
CC_LANGUAGES = ("en", "ru", "de", "zh", "ja", "es", "fr", "it", "pt", "pl", "nl", "vi", "tr", "id", "cs", "fa",
                "sv", "ko", "ar", "hu", "ro", "uk", "el")
GOPHER_ENGLISH = ("the", "be", "to", "of", "and", "that", "have", "with")
STOPWORD_REASONS = {"gopher_stopwords", "web_text_stopwords", "paragraph_stopwords"}


def text_doc(text):
    return TextDoc(id="d", source="test", url="", text=text)


def page(text):
    segments = [Segment(kind="text", text=part) for part in text.split("\n\n")]
    return InterleavedDoc(id="p", source="test", url="", segments=segments)


def stopword_failures(text, language="auto"):
    """The stop-word rules (Gopher, OBELICS page, OBELICS paragraphs) a text breaks, whatever the rule order."""
    gopher = GopherQualityFilter(language=language)
    web = WebTextQualityFilter(language=language)
    failed = set()
    if gopher.score(text_doc(text))["stopwords"] < gopher.min_stopwords:
        failed.add("gopher_stopwords")
    score = web.score(page(text))
    if "stopwords" in score and score["stopwords"] < web.min_stopword_ratio * score["stopword_scale"]:
        failed.add("web_text_stopwords")
    _, dropped = filter_paragraphs(page(text).segments, TextRules(language=language))
    return failed | (set(dropped) & STOPWORD_REASONS)


def drop_rate(lang, language="auto"):
    documents = [*PROSE[lang], "\n\n".join(PROSE[lang])]
    return sum(bool(stopword_failures(text, language)) for text in documents) / len(documents)


# --- the lists ------------------------------------------------------------------------------


def test_every_frequent_language_has_stopwords_and_fineweb2_settings():
    for lang in CC_LANGUAGES[1:]:
        assert wordlists.gopher_profile(lang) is not None, lang
        assert wordlists.stopwords(lang), lang
    assert wordlists.gopher_profile("en") is None
    german = wordlists.gopher_profile("de")
    assert german.config == "deu_Latn" and {"der", "und", "die"} <= set(german.stopwords)
    assert (german.min_mean_word_length, german.max_mean_word_length, german.min_alpha_words_ratio) == (0, 15, 0.774)
    assert len(wordlists.gopher_languages()) >= 25


FINEWEB2_LANGUAGES = frozenset(
    "ar bg cs da de el es fa fi fr he hi hu id it ja ko nl no pl pt ro ru sk sv th tr uk vi zh".split()
)


def test_fineweb2_repetition_thresholds_load_for_all_30_languages():
    assert wordlists.gopher_languages() == FINEWEB2_LANGUAGES
    for lang in FINEWEB2_LANGUAGES:
        profile = wordlists.gopher_profile(lang)
        assert 0 < profile.max_dup_line_fraction < 1, lang
        assert len(profile.max_top_ngram_chars) == len(wordlists.TOP_NGRAM_NS) == 3, lang
        assert len(profile.max_dup_ngram_chars) == len(wordlists.DUP_NGRAM_NS) == 6, lang
        assert all(0 < share < 1 for share in (*profile.max_top_ngram_chars, *profile.max_dup_ngram_chars)), lang
    german = wordlists.gopher_profile("de")  # configs/deu_Latn.yml
    assert german.max_dup_line_fraction == 0.263
    assert german.max_top_ngram_chars == (0.169, 0.153, 0.137)
    assert german.max_dup_ngram_chars == (0.141, 0.134, 0.126, 0.117, 0.108, 0.098)
    spanish = wordlists.gopher_profile("es")  # configs/spa_Latn.yml
    assert (spanish.max_dup_line_fraction, spanish.max_top_ngram_chars[0], spanish.max_dup_ngram_chars[-1]) == (
        0.265, 0.077, 0.099)


def test_fineweb2_ngram_thresholds_must_list_the_rules_n():
    assert wordlists._ngram_limits([[2, 0.2], [3, 0.18], [4, 0.16]], range(2, 5), "top_n_grams", "x") == (
        0.2, 0.18, 0.16)
    with pytest.raises(ValueError, match="xyz_Latn: top_n_grams must list n = 2..4"):
        wordlists._ngram_limits([[2, 0.2], [4, 0.16], [3, 0.18]], range(2, 5), "top_n_grams", "xyz_Latn")
    with pytest.raises(ValueError, match="dup_n_grams must list n = 5..10"):
        wordlists._ngram_limits([[5, 0.15]], range(5, 11), "dup_n_grams", "xyz_Latn")


@pytest.mark.parametrize("lang", sorted(PROSE))
def test_each_document_is_judged_with_its_own_language_lists(lang):
    gopher = GopherQualityFilter()
    for text in PROSE[lang]:
        assert gopher.score(text_doc(text))["lang"] == lang
        assert WebTextQualityFilter().score(page(text))["lang"] == lang
    expected = GOPHER_ENGLISH if lang == "en" else wordlists.gopher_profile(lang).stopwords
    assert gopher.stopwords_for(lang) == frozenset(expected)


def test_flagged_words_follow_the_language_with_english_added():
    assert {"ficken", "porno"} <= wordlists.flagged_words("de")
    assert "ficken" not in wordlists.flagged_words("fr")
    assert wordlists.flagged_words("vi") == frozenset()
    rules = TextRules(language="de")
    for word in ("ficken", "porn"):
        spam = f"Hier gibt es {word} und mehr, alles heute kostenlos für alle."
        _, dropped = filter_paragraphs([Segment(kind="text", text=spam)], rules)
        assert dropped == {"paragraph_flagged_words": 1}, word
    english = WebTextQualityFilter(language="en")
    assert english.score(page("ficken " * 20))["flagged_words"] == 0
    assert WebTextQualityFilter(language="vi").score(page(" ".join(FLAGGED_WORDS)))["flagged_words"] == 1


def test_stop_word_thresholds_scale_with_how_much_text_a_list_covers():
    web = WebTextQualityFilter()
    assert web.score(page(PROSE["en"][0]))["stopword_scale"] == 1
    assert web.score(page(PROSE["de"][0]))["stopword_scale"] == 1  # never stricter than English
    assert web.score(page(PROSE["tr"][0]))["stopword_scale"] < 0.7  # Turkish suffixes do the work of stop words
    assert WebTextQualityFilter(stopwords=("ve",)).score(page(PROSE["tr"][0]))["stopword_scale"] == 1


def test_language_setting_fixes_the_language_or_falls_back_to_english():
    assert rules_language(PROSE["de"][0], "auto") == "de"
    assert rules_language(PROSE["de"][0], "fr") == "fr"
    assert rules_language("12345 67890", "auto") == "en"


# --- the rules per language -----------------------------------------------------------------


def test_elided_stop_words_count():
    assert count_stopwords("l'eau et l’école", "fr", frozenset({"l'", "et"})) == 3


def test_unsegmented_languages_count_characters_and_substrings():
    gopher = GopherQualityFilter()
    score = gopher.score(text_doc(PROSE["zh"][0]))
    assert score["words"] > 100 and score["mean_word_length"] == 1
    assert count_stopwords("我的书在桌子上的", "zh", frozenset({"的", "在"})) == 3
    nouns = "".join(["苹果香蕉桌子椅子电脑手机汽车飞机"] * 10)
    assert gopher.keep(gopher.score(text_doc(nouns)))[1] in {"gopher_stopwords", "gopher_word_count"}
    assert gopher.keep({**score, "stopwords": 1})[1] == "gopher_stopwords"


def test_a_german_noun_list_still_fails_the_stop_word_rules():
    nouns = ("Haus Baum Auto Fenster Tisch Stuhl Lampe Garten Straße Brücke " * 6).strip()
    assert GopherQualityFilter(language="de").keep(GopherQualityFilter(language="de").score(text_doc(nouns)))[1] == (
        "gopher_stopwords")
    assert WebTextQualityFilter(language="de").score(page(nouns))["stopwords"] == 0


def test_full_width_punctuation_counts_and_thai_has_no_punctuation_rule():
    chinese = WebTextQualityFilter().score(page(PROSE["zh"][0]))
    assert chinese["punctuation"] >= 0.03
    assert "stopwords" not in chinese
    assert WebTextQualityFilter().score(page(PROSE["th"][0]))["punctuation"] == 1


def test_common_words_come_from_wordfreq_per_language():
    rules = WebTextQualityFilter(common_words_top=50_000)
    assert rules.score(page(PROSE["de"][1]))["common_words"] > 0.9
    salad = "Quastenflosser Zwetschgendatschi Kuddelmuddel Schlawiner Fisimatenten Larifari Tohuwabohu " * 3
    assert WebTextQualityFilter(common_words_top=50_000, language="de").score(page(salad))["common_words"] < 0.5
    assert "common_words" not in WebTextQualityFilter().score(page(PROSE["de"][1]))


# --- drop rates on comparable prose ---------------------------------------------------------


def test_non_english_prose_is_dropped_by_the_stop_word_rules_no_more_than_english():
    english = drop_rate("en")
    rates = {lang: drop_rate(lang) for lang in PROSE}
    assert english == 0
    assert {lang: rate for lang, rate in rates.items() if rate > english} == {}


def test_judged_as_english_the_same_prose_fails_the_stop_word_rules():
    for lang in sorted(set(PROSE) - {"en"}):
        assert drop_rate(lang, language="en") == 1, lang
    assert drop_rate("en", language="en") == 0


def test_gopher_keeps_the_prose_of_every_language():
    gopher = GopherQualityFilter()
    reasons = {lang: gopher.keep(gopher.score(text_doc("\n\n".join(texts))))[1] for lang, texts in PROSE.items()}
    assert set(reasons.values()) == {None}


@pytest.mark.parametrize("lang", sorted(PROSE))
def test_gopher_repetition_keeps_the_prose_of_every_language_with_its_own_thresholds(lang):
    repetition = GopherRepetitionFilter()
    for text in [*PROSE[lang], "\n\n".join(PROSE[lang])]:
        score = repetition.score(text_doc(text))
        assert score["lang"] == lang
        assert repetition.keep(score) == (True, None)
    profile = wordlists.gopher_profile(lang)
    expected = (
        (repetition.max_dup_line_fraction, repetition.max_top_ngram_chars, repetition.max_dup_ngram_chars)
        if profile is None
        else (profile.max_dup_line_fraction, profile.max_top_ngram_chars, profile.max_dup_ngram_chars)
    )
    assert repetition.thresholds_for(lang) == expected
