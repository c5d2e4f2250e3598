import pytest

from curation.config import from_mapping
from curation.records import InterleavedDoc, Segment
from filters.text_quality import GopherRepetitionFilter
from filters.web_text import FLAGGED_WORDS, STOPWORDS, TextRules, WebTextQualityFilter, filter_paragraphs

PROSE = [
    "The old lighthouse on the northern cape was built in 1874, when the shipping lanes around the "
    "island were still poorly charted. For almost a century it was kept by the same family, who lived "
    "in the small stone cottage at its foot and climbed the spiral stairs every evening to light the lamp.",
    "When the light was finally automated in 1968, the last keeper moved to the village on the other "
    "side of the bay. He later said that he missed the silence more than anything else, and that he "
    "never again slept as well as he had during the long winter storms.",
    "Today the tower is maintained by a volunteer society that opens it to visitors on summer weekends. "
    "From the gallery at the top you can see across the strait to the mainland, and on a clear day the "
    "white cliffs of the neighbouring islands are visible far to the south.",
    "If you plan to visit, bring sturdy shoes and a warm jacket: the path from the car park is steep and "
    "exposed, and the wind can be surprisingly cold even in July. There is no café at the site, so it is "
    "worth packing a thermos and something to eat.",
    "Our guide, a retired schoolteacher who has volunteered here for twelve years, told us that the "
    "original lens was removed in the nineties and is now on display in the maritime museum in town. "
    "It is well worth the short detour on the way back.",
]
PERKS = "Free parking for all hotel guests. Breakfast is included in the room rate. Pets are welcome in every room."
SHORT_OK = "It was on the table."
IMAGE = Segment(kind="image", image_url="https://example.org/photos/tower.jpg", text="The tower at dusk")


def page(*texts, images=True):
    segments = []
    for text in texts:
        segments.append(Segment(kind="text", text=text))
        if images:
            segments.append(IMAGE)
    return InterleavedDoc(id="p", source="test", url="https://example.org/", segments=segments)


def paragraph_reason(text, rules=TextRules()):
    kept, dropped = filter_paragraphs([Segment(kind="text", text=text)], rules)
    assert (kept == []) == bool(dropped)
    return next(iter(dropped), None)


def test_real_prose_passes_every_paragraph_rule_untouched():
    segments = page(*PROSE).segments
    kept, dropped = filter_paragraphs(segments)
    assert dropped == {}
    assert kept == segments
    assert all(a is b for a, b in zip(kept, segments))


def test_real_prose_passes_the_document_rules_and_writes_stats():
    doc = page(*PROSE)
    verdict = WebTextQualityFilter()(doc)
    assert (verdict.keep, verdict.reason) == (True, None)
    assert doc.stats["web_text_quality.words"] > 200
    assert doc.stats["web_text_quality.stopwords"] > 0.35
    assert "web_text_quality.gopher.dup_para_fraction" in doc.stats


def test_prose_paragraphs_in_one_segment_pass():
    assert paragraph_reason("\n\n".join(PROSE)) is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Read more.", "paragraph_too_few_words"),
        (" ".join([PROSE[0]] * 20), "paragraph_too_many_words"),
        (PROSE[1] + " " + "=" * 80, "paragraph_char_repetition"),
        (f"{PERKS} {PROSE[2]} {PROSE[3]} {PERKS}", "paragraph_word_repetition"),
        ("Call 555-0123 or 555-0199 today, 09:00-17:00 (Mon-Fri), ref. #A-1138/22.", "paragraph_special_chars"),
        ("Fresh organic apples, ripe bananas, juicy oranges, crisp pears, sweet cherries.", "paragraph_stopwords"),
        (
            "The museum also has a small room of erotic art from the eighteenth century, which is closed "
            "to visitors under the age of sixteen.",
            "paragraph_flagged_words",
        ),
        (
            "it was a long day and we were all tired so we went back to the hotel early",
            "paragraph_punctuation",
        ),
    ],
)
def test_each_paragraph_rule_drops_with_its_reason(text, reason):
    assert paragraph_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        SHORT_OK,
        "it was a long day and we were all tired",  # under 12 tokens: no punctuation rule
        "The museum is closed on Mondays, and it opens again at ten on Tuesday morning.",
    ],
)
def test_short_and_plain_paragraphs_pass(text):
    assert paragraph_reason(text) is None


def test_word_limits_are_settings():
    assert paragraph_reason(SHORT_OK, TextRules(min_words=6)) == "paragraph_too_few_words"
    assert paragraph_reason(PROSE[0], TextRules(max_words=20)) == "paragraph_too_many_words"
    assert paragraph_reason(PROSE[0], TextRules(max_words=200)) is None


def test_flagged_and_stop_words_are_configurable():
    text = "The spam filter on the old server was not very good at its job."
    assert paragraph_reason(text) is None
    assert paragraph_reason(text, TextRules(flagged_words=("spam",))) == "paragraph_flagged_words"
    assert paragraph_reason(text, TextRules(stopwords=("zebra",))) == "paragraph_stopwords"
    assert {"the", "of", "and", "it's"} <= set(STOPWORDS)
    assert all(w == w.lower() for w in STOPWORDS + FLAGGED_WORDS)


def test_curly_apostrophes_count_as_stop_words():
    assert paragraph_reason("It’s what they’re doing.", TextRules(stopwords=("it's", "they're", "what"))) is None


def test_common_word_rule_reads_a_word_file(tmp_path):
    common = tmp_path / "common.txt"
    common.write_text("the\ncat\nsat\non\nmat\nIt\nwas\n\n", encoding="utf-8")
    rules = TextRules(common_words_path=str(common))
    assert paragraph_reason("The cat sat on the mat.", rules) is None
    assert paragraph_reason("The axolotl sat on the escritoire.", rules) == "paragraph_common_words"
    assert paragraph_reason("The axolotl sat on the escritoire.") is None  # no file: rule off


def test_only_failing_paragraphs_go_and_images_stay_in_place():
    junk = "Rooms | Rates | Gallery | Reviews | Contact"
    segments = [
        Segment(kind="text", text=f"{PROSE[0]}\n\n{junk}\n\n{PROSE[1]}"),
        IMAGE,
        Segment(kind="text", text=f"{junk}\n\n\n\nRead more."),
        Segment(kind="image", image_url="https://example.org/photos/lens.png"),
        Segment(kind="text", text=PROSE[2]),
    ]
    kept, dropped = filter_paragraphs(segments)
    assert [s.kind for s in kept] == ["text", "image", "image", "text"]
    assert kept[0].text == f"{PROSE[0]}\n\n{PROSE[1]}"
    assert kept[1] is segments[1] and kept[2] is segments[3] and kept[3] is segments[4]
    assert dropped == {"paragraph_stopwords": 2, "paragraph_too_few_words": 1}
    assert segments[0].text.count(junk) == 1  # inputs unchanged


def test_blank_paragraphs_vanish_uncounted():
    segments = [Segment(kind="text", text=f"\n\n{PROSE[0]}\n\n   \n\n"), Segment(kind="text", text=" ")]
    kept, dropped = filter_paragraphs(segments)
    assert [s.text for s in kept] == [PROSE[0]]
    assert dropped == {}


def doc_reason(doc, **settings):
    return WebTextQualityFilter(**settings)(doc).reason


@pytest.mark.parametrize(
    "texts, reason",
    [
        (["Click here to subscribe."], "web_text_too_few_words"),
        ([" ".join(PROSE)] * 12, "web_text_too_many_words"),
        ([*PROSE, "~" * 400], "web_text_char_repetition"),
        ([*PROSE, PROSE[1], PROSE[2]], "web_text_word_repetition"),
        ([*PROSE, "2023-05-01 | 14:32 | #4471 | $19.99 | 4.5/5 | 1,284 views | 36 comments " * 4],
         "web_text_special_chars"),
        (
            [
                "Lighthouse tours, boat trips, guided walks, seal watching, birding, kayaking, fishing charters.",
                "Cliff climbing, photography workshops, local crafts, seafood markets, harbour festivals.",
            ],
            "web_text_stopwords",
        ),
        ([*PROSE, "The gift shop sells erotic postcards, porn magazines and a threesome of rubber ducks."],
         "web_text_flagged_words"),
        ([" ".join(PROSE).replace(",", "").replace(".", "").replace(":", "")], "web_text_punctuation"),
    ],
)
def test_each_document_rule_drops_with_its_reason(texts, reason):
    assert doc_reason(page(*texts)) == reason


def test_document_thresholds_differ_from_paragraph_ones():
    rules, doc_filter = TextRules(), WebTextQualityFilter()
    assert (rules.min_words, rules.max_words, doc_filter.min_words, doc_filter.max_words) == (4, 1000, 10, 2000)
    assert doc_filter.min_tokens_for_punctuation == 0 and rules.min_tokens_for_punctuation == 12
    nine_words = "We stayed two nights, and we would return soon."
    assert paragraph_reason(nine_words) is None
    assert doc_reason(page(nine_words)) == "web_text_too_few_words"


def test_document_common_word_rule(tmp_path):
    common = tmp_path / "common.txt"
    common.write_text("\n".join({w.lower() for p in PROSE[:2] for w in p.replace(",", " ").replace(".", " ").split()}))
    assert doc_reason(page(*PROSE[:2]), common_words_path=str(common)) is None
    assert doc_reason(page(*PROSE[:3]), common_words_path=str(common)) == "web_text_common_words"


def test_gopher_repetition_runs_after_the_obelics_rules():
    comments = "\n".join(
        f"{line}\nReply"
        for line in [
            "Great article, thanks for sharing it with us all.",
            "I have been to this lighthouse twice and I loved it both times.",
            "Does anyone know if the tower is open in October?",
            "We went last summer and the view from the top was amazing.",
        ]
    )
    doc = page(PROSE[0], comments)
    assert doc_reason(doc) == "gopher_dup_line_fraction"
    assert doc_reason(doc, gopher_repetition=None) is None
    assert doc_reason(doc, gopher_repetition=GopherRepetitionFilter(max_dup_line_fraction=0.5)) is None


def test_a_page_without_text_is_too_short():
    doc = InterleavedDoc(id="p", source="test", url="", segments=[IMAGE])
    assert doc_reason(doc) == "web_text_too_few_words"


def test_settings_load_from_config():
    doc_filter = from_mapping(
        WebTextQualityFilter,
        {"min_words": 3, "stopwords": ["the", "a"], "gopher_repetition": {"max_dup_line_fraction": 0.5}},
    )
    assert doc_filter.min_words == 3 and doc_filter.max_words == 2000
    assert doc_filter.stopwords == ("the", "a")
    assert doc_filter.gopher_repetition == GopherRepetitionFilter(max_dup_line_fraction=0.5)
    assert from_mapping(WebTextQualityFilter, {"gopher_repetition": None}).gopher_repetition is None
    assert from_mapping(TextRules, {"max_words": 500}) == TextRules(max_words=500)
