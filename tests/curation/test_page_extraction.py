import pytest

from curation.html_extract import ExtractSettings, MainContent, extract_document, main_content
from curation.page_extraction import Extraction, FallbackSettings, extract_page, trafilatura_segments
from curation.records import Segment
from test_html_extract import ARTICLE, BOILERPLATE_PAGE

URL = "https://valley.example/story"
PAGE_WITH_IMAGE = BOILERPLATE_PAGE.replace(
    f"<p>{ARTICLE[1]}</p>", f'<figure><img src="/img/market.jpg" alt="The market"></figure><p>{ARTICLE[1]}</p>'
)
# A first pass for which every paragraph is too short: it keeps nothing (a heading that introduces
# nothing goes too).
NO_PARAGRAPHS = ExtractSettings(min_paragraph_chars=10_000)


def _texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments if s.kind == "text"]


def _text(*lengths: int) -> list[Segment]:
    return [Segment(kind="text", text="x" * n) for n in lengths]


def test_a_good_first_pass_is_kept_without_asking_trafilatura():
    extraction = extract_page(PAGE_WITH_IMAGE, URL)
    assert extraction.extractor == "html_extract"
    assert extraction.segments == extract_document(PAGE_WITH_IMAGE, URL)


def test_a_poor_first_pass_is_replaced_by_the_longer_second_pass_with_images_in_place():
    first = extract_document(PAGE_WITH_IMAGE, URL, NO_PARAGRAPHS)
    assert first == []

    extraction = extract_page(PAGE_WITH_IMAGE, URL, NO_PARAGRAPHS)

    assert extraction.extractor == "trafilatura"
    assert _texts(extraction.segments) == ["A day in the valley", *ARTICLE]
    kinds = [s.kind for s in extraction.segments]
    assert kinds == ["text", "text", "image", "text", "text"]
    image = extraction.segments[2]
    assert (image.image_url, image.text) == ("https://valley.example/img/market.jpg", "The market")


def test_fallback_none_keeps_the_first_pass_however_poor():
    extraction = extract_page(PAGE_WITH_IMAGE, URL, NO_PARAGRAPHS, FallbackSettings(extractor="none"))
    assert extraction == Extraction([], "html_extract")


def test_the_first_pass_stays_when_the_second_finds_no_more_text():
    # All the page's prose sits in link lists: trafilatura keeps nothing, the first pass a heading.
    links = "".join(f'<li><a href="/{i}">{ARTICLE[i % 3]}</a></li>' for i in range(6))
    page = f"<html><body><h1>Index of stories</h1><ul>{links}</ul></body></html>"
    first = extract_document(page, URL)
    extraction = extract_page(page, URL, fallback=FallbackSettings(max_share=1.0))
    assert extraction.extractor == "html_extract"
    assert extraction.segments == first


def test_the_rule_needs_both_a_small_share_and_a_short_text():
    rule = FallbackSettings(max_share=0.5, max_chars=1000)
    assert rule.wants_second_pass(MainContent(_text(100), page_text_chars=1000))
    assert not rule.wants_second_pass(MainContent(_text(600), page_text_chars=1000))  # kept 60%
    assert not rule.wants_second_pass(MainContent(_text(1200), page_text_chars=10_000))  # long enough
    assert not rule.wants_second_pass(MainContent([], page_text_chars=0))  # nothing to find
    assert not FallbackSettings(extractor="none").wants_second_pass(MainContent([], page_text_chars=1000))


def test_main_content_measures_the_page_text_an_extraction_could_keep():
    found = extract_document(BOILERPLATE_PAGE, URL)
    measured = main_content(BOILERPLATE_PAGE, URL)
    assert measured.segments == found
    assert measured.text_chars == sum(len(t) for t in _texts(found))
    # the article, the comment and the newsletter prompt vote; the one-line links and headings do not
    assert measured.page_text_chars > measured.text_chars


def test_trafilatura_segments_resolve_images_and_drop_data_urls():
    page = PAGE_WITH_IMAGE.replace(
        f"<p>{ARTICLE[2]}</p>", f'<p>{ARTICLE[2]}</p><figure><img src="data:image/png;base64,AAAA" alt="x"></figure>'
    )
    images = [s for s in trafilatura_segments(page, URL) if s.kind == "image"]
    assert [s.image_url for s in images] == ["https://valley.example/img/market.jpg"]
    assert all(s.kind == "text" for s in trafilatura_segments(page, URL, keep_images=False))


@pytest.mark.parametrize(
    "knobs", [{"extractor": "readability"}, {"max_share": 1.5}, {"max_share": -0.1}, {"max_chars": -1}]
)
def test_fallback_settings_reject_bad_values(knobs):
    with pytest.raises(ValueError):
        FallbackSettings(**knobs)
