import math

import pytest

from curation.config import from_mapping
from curation.records import CaptionPair
from filters.caption_checks import (
    CLIP_ALT_KEY,
    CLIP_CAPTION_KEY,
    SYNTHETIC_KEY,
    CaptionCheckSettings,
    CaptionClipMarginCheck,
    CaptionEntityCheck,
    CaptionLanguageCheck,
    CaptionLengthCheck,
    CaptionRefusalCheck,
    CaptionRepetitionCheck,
    alt_text_entities,
    default_checks,
    run_checks,
    words,
)

ALT = "Eiffel Tower at night, Paris 2019"
GOOD = (
    "The Eiffel Tower glows against a dark blue sky at night in Paris, its iron lattice lit in warm gold. "
    "Photographed in 2019 from the Trocadéro, the tower rises above a row of bare trees."
)


def pair(caption=GOOD, alt=ALT, stats=None):
    return CaptionPair(
        id="p", source="s", url="http://127.0.0.1/x.jpg", text=alt,
        meta={SYNTHETIC_KEY: caption} if caption is not None else {}, stats=dict(stats or {}),
    )


def reason(check, record):
    return check(record).reason


# Length


@pytest.mark.parametrize(
    "caption, alt, expected",
    [
        (GOOD, ALT, None),
        (None, ALT, "caption_empty"),
        ("   ", ALT, "caption_empty"),
        ("?!", ALT, "caption_empty"),
        ("The Eiffel Tower in Paris.", ALT, "caption_too_short"),
        # 8 words, enough alone, but not 1.25 times the alt text's 8 words.
        ("The Eiffel Tower at night in Paris, 2019.", "The Eiffel Tower at night in Paris 2019", "caption_too_short"),
        ("word " * 121, ALT, "caption_too_long"),
        ("word " * 120, ALT, None),
    ],
)
def test_length(caption, alt, expected):
    assert reason(CaptionLengthCheck(), pair(caption, alt)) == expected


def test_length_scores_land_in_stats_and_settings_apply():
    record = pair("one two three four five six seven eight nine ten", "a b")
    assert CaptionLengthCheck()(record).keep
    assert record.stats["caption_length.words"] == 10
    assert record.stats["caption_length.alt_words"] == 2
    assert record.stats["caption_length.length_ratio"] == 5
    assert reason(CaptionLengthCheck(max_words=9), record) == "caption_too_long"
    assert reason(CaptionLengthCheck(min_words=11), record) == "caption_too_short"


def test_chinese_characters_count_as_words():
    assert words("埃菲尔铁塔 at night") == ["埃", "菲", "尔", "铁", "塔", "at", "night"]


# Repetition


@pytest.mark.parametrize(
    "caption, expected",
    [
        (GOOD, None),
        ("A woman in a red dress and a woman in a blue dress stand by the door.", None),
        ("The tower is tall. The tower is tall. The tower is tall. The tower is tall.", "caption_repetition"),
        (GOOD + " lit in warm gold," * 5, "caption_repetition"),
        ("very " * 20, "caption_repetition"),
    ],
)
def test_repetition(caption, expected):
    assert reason(CaptionRepetitionCheck(), pair(caption)) == expected


def test_repetition_share_is_case_insensitive():
    record = pair("The Tower is tall and the tower is tall")
    check = CaptionRepetitionCheck()
    assert check.score(record)["dup_ngram_share"] == pytest.approx(2 / 7)


# Refusals and boilerplate


@pytest.mark.parametrize(
    "caption, alt, expected",
    [
        (GOOD, ALT, None),
        ("I'm sorry, but I can't see the image you provided.", ALT, "caption_refusal"),
        ("I’m sorry, I cannot help with that.", ALT, "caption_refusal"),
        ("As an AI, I cannot view images.", ALT, "caption_refusal"),
        ("Here is a caption for the Eiffel Tower at night in Paris in 2019.", ALT, "caption_refusal"),
        ("Caption: The Eiffel Tower at night.", ALT, "caption_refusal"),
        ("Based on the alt text, this shows the Eiffel Tower.", ALT, "caption_refusal"),
        (GOOD + " I hope this helps!", ALT, "caption_refusal"),
        # The alt text says it itself: a title, not a refusal.
        ("A concert poster for I Can't Stop Loving You, in bold red letters.", "I Can't Stop Loving You poster", None),
        # Whole words only.
        ("A Hawaiian canoe on a reef at sunset.", ALT, None),
    ],
)
def test_refusal(caption, alt, expected):
    assert reason(CaptionRefusalCheck(), pair(caption, alt)) == expected


def test_refusal_phrases_are_configurable():
    record = pair("A stunning view of the Eiffel Tower.")
    assert reason(CaptionRefusalCheck(), record) is None
    assert reason(CaptionRefusalCheck(phrases=("stunning",)), record) == "caption_refusal"


# Language

FRENCH_ALT = "La tour Eiffel illuminée la nuit, vue depuis le Trocadéro à Paris"
FRENCH_CAPTION = (
    "La tour Eiffel se dresse dans la nuit parisienne, illuminée de lumières dorées, "
    "vue depuis les jardins du Trocadéro au bord de la Seine."
)


@pytest.mark.parametrize(
    "caption, alt, languages, expected",
    [
        (GOOD, ALT, (), None),
        (FRENCH_CAPTION, FRENCH_ALT, (), None),
        (GOOD, FRENCH_ALT, (), "caption_language_mismatch"),
        (FRENCH_CAPTION, "The Eiffel Tower lit up at night, seen from the gardens", (), "caption_language_mismatch"),
        (FRENCH_CAPTION, ALT, ("en",), "caption_language_mismatch"),
        (FRENCH_CAPTION, ALT, ("en", "fr"), None),
        (GOOD, FRENCH_ALT, ("en",), None),
    ],
)
def test_language(caption, alt, languages, expected):
    assert reason(CaptionLanguageCheck(languages=languages), pair(caption, alt)) == expected


def test_language_unsure_alt_text_expects_nothing():
    record = pair(FRENCH_CAPTION, "IMG 2019 0042")
    score = CaptionLanguageCheck().score(record)
    assert score["alt_lang_score"] < 0.65
    assert reason(CaptionLanguageCheck(), record) is None
    assert reason(CaptionLanguageCheck(min_alt_score=0.0), record) == (
        None if score["alt_lang"] == "fr" else "caption_language_mismatch"
    )


def test_language_writes_probabilities_only():
    record = pair()
    CaptionLanguageCheck()(record)
    assert set(record.stats) == {"caption_language.lang_score", "caption_language.alt_lang_score"}


# Entities


@pytest.mark.parametrize(
    "alt, numbers, names",
    [
        (ALT, {"2019"}, {"tower", "paris"}),  # "Eiffel" starts the text
        ("The Eiffel Tower at night. Paris in 2019", {"2019"}, {"eiffel", "tower"}),  # "Paris" starts a sentence
        ("A view of Zürich's Old Town, 1,000 steps and 3.5 km", {"1000", "3.5"}, {"zurich", "old", "town"}),
        ("Summer Dress For Women With Pockets", set(), {"dress", "women", "pockets"}),
        ("what I saw in NYC", set(), {"nyc"}),
        ("", set(), set()),
    ],
)
def test_alt_text_entities(alt, numbers, names):
    assert alt_text_entities(alt) == (frozenset(numbers), frozenset(names))


@pytest.mark.parametrize(
    "caption, alt, expected",
    [
        (GOOD, ALT, None),
        (GOOD.replace("2019", "2018"), ALT, "caption_missing_entities"),
        (GOOD.replace("Paris", "the city"), ALT, "caption_missing_entities"),
        (
            "A poster of zurich's old town, with 1000 steps over 3.5 km.",
            "A view of Zürich's Old Town, 1,000 steps and 3.5 km",
            None,
        ),
        ("Three puppies sleep in a basket by the fire.", "Puppies: 3 in a basket", None),
        ("Puppies sleep in a basket by the fire.", "Puppies: 3 in a basket", "caption_missing_entities"),
        ("A plain photo of a cup on a table.", "cup on a table", None),
    ],
)
def test_entities(caption, alt, expected):
    assert reason(CaptionEntityCheck(), pair(caption, alt)) == expected


def test_entity_thresholds():
    alt = "Anna, Bert, Carl, Dora and Emil at the lake in 2020"
    four_of_five = "Anna, Bert, Carl and Dora stand together at the lake in 2020."
    record = pair(four_of_five, alt)
    score = CaptionEntityCheck().score(record)
    assert score == {"numbers": 1, "numbers_kept": 1.0, "names": 4, "names_kept": 0.75}  # "Anna" starts the text
    assert reason(CaptionEntityCheck(), record) == "caption_missing_entities"
    assert reason(CaptionEntityCheck(min_name_share=0.75), record) is None
    no_year = pair(four_of_five.replace(" in 2020", ""), alt)
    assert reason(CaptionEntityCheck(min_name_share=0.0), no_year) == "caption_missing_entities"
    assert reason(CaptionEntityCheck(min_name_share=0.0, min_number_share=0.0), no_year) is None


# CLIP margin


@pytest.mark.parametrize(
    "stats, expected",
    [
        ({}, None),
        ({CLIP_ALT_KEY: 0.30}, None),
        ({CLIP_ALT_KEY: math.nan, CLIP_CAPTION_KEY: 0.1}, None),
        ({CLIP_ALT_KEY: 0.30, CLIP_CAPTION_KEY: 0.32}, None),
        ({CLIP_ALT_KEY: 0.30, CLIP_CAPTION_KEY: 0.26}, None),
        ({CLIP_ALT_KEY: 0.30, CLIP_CAPTION_KEY: 0.24}, "caption_clip_margin"),
    ],
)
def test_clip_margin(stats, expected):
    assert reason(CaptionClipMarginCheck(), pair(stats=stats)) == expected


def test_clip_margin_records_the_delta_only_when_scored():
    scored, unscored = pair(stats={CLIP_ALT_KEY: 0.30, CLIP_CAPTION_KEY: 0.26}), pair()
    CaptionClipMarginCheck()(scored)
    CaptionClipMarginCheck()(unscored)
    assert scored.stats["caption_clip_margin.delta"] == pytest.approx(-0.04)
    assert unscored.stats == {}
    assert reason(CaptionClipMarginCheck(margin=0.03), scored) == "caption_clip_margin"


# Running them together


def test_default_checks_order_and_config():
    names = [check.name for check in default_checks()]
    assert names == [
        "caption_length", "caption_refusal", "caption_repetition",
        "caption_entities", "caption_language", "caption_clip_margin",
    ]
    settings = from_mapping(CaptionCheckSettings, {"language": None, "length": {"max_words": 60}})
    checks = default_checks(settings)
    assert "caption_language" not in [check.name for check in checks]
    assert checks[0] == CaptionLengthCheck(max_words=60)


def test_run_checks_passes_a_good_caption_and_writes_stats():
    record = pair(stats={CLIP_ALT_KEY: 0.30, CLIP_CAPTION_KEY: 0.31})
    assert run_checks(record, default_checks()) == (True, None)
    assert record.stats["caption_entities.names_kept"] == 1.0
    assert record.stats["caption_clip_margin.delta"] == pytest.approx(0.01)


def test_run_checks_first_failure_wins():
    record = pair("I'm sorry.", stats={CLIP_ALT_KEY: 0.30, CLIP_CAPTION_KEY: 0.1})
    assert run_checks(record, default_checks()) == (False, "caption_too_short")
    assert "caption_refusal.hits" not in record.stats
    checks = [CaptionRefusalCheck(), CaptionClipMarginCheck()]
    assert run_checks(pair("I'm sorry, I can't see it."), checks) == (False, "caption_refusal")
