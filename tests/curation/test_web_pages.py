from curation.html_extract import ExtractSettings
from curation.records import ImageData, InterleavedDoc, Reject, Segment
from curation.warc import WarcFailure, WarcResponse
from curation.web_pages import (
    PageSettings,
    attach_images,
    failure_reject,
    newest_capture,
    page_from_response,
    page_id,
    select_image_refs,
)

ARTICLE = (
    "<html><body><nav><a href='/'>Home</a></nav><article><h1>A walk in the hills</h1>"
    "<p>We walked along the ridge for most of the morning and stopped at the old stone hut for lunch.</p>"
    "<img src='/pics/ridge.jpg' alt='The ridge'>"
    "<p>In the afternoon the clouds came down, so we took the valley path back to the village below.</p>"
    "</article><footer>Copyright</footer></body></html>"
)


def _response(body: bytes, content_type: str = "text/html", url: str = "https://site.test/walk") -> WarcResponse:
    return WarcResponse(url=url, date="2026-01-01T00:00:00Z", content_type=content_type, charset="utf-8",
                        body=body, record_id="<urn:uuid:1>", offset=42)


def _image(sha: str) -> ImageData:
    return ImageData(sha256=sha, phash="0" * 16, width=300, height=200, format="jpeg", data=sha.encode())


def _doc(*segments: Segment, date: str = "2026-01-01", doc_id: str = "p") -> InterleavedDoc:
    return InterleavedDoc(id=doc_id, source="s", url="https://site.test/p", segments=list(segments),
                          meta={"warc_date": date})


def test_page_from_response_extracts_text_and_images_in_order():
    doc = page_from_response(_response(ARTICLE.encode()), "crawl.warc.gz", PageSettings())
    assert isinstance(doc, InterleavedDoc)
    assert doc.id == page_id("https://site.test/walk", "2026-01-01T00:00:00Z")
    assert doc.source == "crawl.warc.gz@42"
    kinds = [s.kind for s in doc.segments]
    assert "image" in kinds and kinds.index("image") > 0
    assert doc.segments[kinds.index("image")].image_url == "https://site.test/pics/ridge.jpg"
    assert "Copyright" not in doc.text and "stone hut" in doc.text
    assert doc.meta["extractor"] == "html_extract"


def test_page_from_response_names_the_extractor_of_a_second_pass():
    settings = PageSettings(extract=ExtractSettings(min_paragraph_chars=10_000))  # the first pass keeps nothing
    doc = page_from_response(_response(ARTICLE.encode()), "crawl.warc.gz", settings)
    assert isinstance(doc, InterleavedDoc)
    assert doc.meta["extractor"] == "trafilatura"
    assert "stone hut" in doc.text and "valley path" in doc.text


def test_page_from_response_names_why_a_page_is_no_document():
    settings = PageSettings(max_page_bytes=1000)
    cases = {
        ("read", "not_html"): _response(b"%PDF-1.4", "application/pdf"),
        ("read", "page_too_large"): _response(ARTICLE.encode() * 10),
        ("extract", "empty_after_extraction"): _response(b"<html><body><nav>Home</nav></body></html>"),
    }
    for (step, reason), response in cases.items():
        result = page_from_response(response, "f", settings)
        assert isinstance(result, Reject) and (result.step, result.reason) == (step, reason)
        assert result.url == response.url


def test_failure_reject_is_a_read_dead_letter():
    row = failure_reject(WarcFailure(source="f.warc.gz", offset=99, reason="corrupt_member", detail="bad"))
    assert (row.step, row.reason, row.dead_letter, row.source) == ("read", "corrupt_member", True, "f.warc.gz@99")


def test_newest_capture_wins_and_ties_go_to_the_smallest_id():
    old, new, tie = _doc(date="2026-01-01", doc_id="b"), _doc(date="2026-02-01", doc_id="c"), _doc(date="2026-02-01", doc_id="a")
    kept, dropped = newest_capture([old, new, tie])
    assert kept.id == "a" and {d.id for d in dropped} == {"b", "c"}


def test_select_image_refs_filters_repeats_and_caps():
    segments = [Segment("text", "hello")] + [
        Segment("image", image_url=url) for url in ["https://x/1.jpg", "https://x/icon.png", "https://x/1.jpg",
                                                    "https://x/2.jpg", "https://x/3.jpg"]
    ]

    def judge(url):
        return ("icon" not in url, None if "icon" not in url else "banned")

    doc, events = select_image_refs(_doc(*segments), judge, max_images=2)
    assert [s.image_url for s in doc.segments if s.kind == "image"] == ["https://x/1.jpg", "https://x/2.jpg"]
    assert events == [("image_url", "banned"), ("image_url", "repeated_in_page"), ("image_cap", "over_page_limit")]
    assert doc.segments[0].text == "hello"


def test_attach_images_stores_each_image_once_and_names_failures():
    doc = _doc(Segment("image", image_url="u1"), Segment("text", "t"), Segment("image", image_url="u2"),
               Segment("image", image_url="u3"), Segment("image", image_url="u4"))
    outcomes = {"u1": _image("s1"), "u2": _image("s1"), "u3": ("image_quality", "small_image")}
    attached, events = attach_images(doc, outcomes)
    assert [(s.kind, s.image_sha256) for s in attached.segments] == [("image", "s1"), ("text", "")]
    assert [i.sha256 for i in attached.images] == ["s1"]
    assert events == [("image_dedup", "repeated_in_page"), ("image_quality", "small_image"), ("image_fetch", "missing")]
