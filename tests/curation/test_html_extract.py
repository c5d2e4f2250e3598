import time

from curation.html_extract import ExtractSettings, extract_document
from curation.records import Segment

ARTICLE = [
    "The river valley was quiet in the early morning, and the fishermen had already gone out, "
    "leaving the small harbour to the gulls and to the old ferryman who never seemed to sleep.",
    "By noon the market filled with traders from the hill villages, carrying baskets of pears, "
    "walnuts, and the sharp white cheese that the region is known for across the whole country.",
    "In the evening, the lamps were lit one by one along the quay, and the sound of an accordion "
    "drifted over the water while children chased each other between the moored boats.",
]

BOILERPLATE_PAGE = f"""<!doctype html>
<html><head><title>Valley</title><style>p {{ color: red }}</style><script>var tracking = 1;</script></head>
<body class="has-sidebar">
<header class="site-header"><a href="/">Home</a> <a href="/news">News</a> Site header words</header>
<nav><ul><li><a href="/a">Politics</a></li><li><a href="/b">Sports</a></li><li><a href="/c">Weather</a></li></ul></nav>
<div id="cookie-banner">We use cookies to improve your experience, please accept all cookies now.</div>
<div class="ad-slot">Buy cheap watches today, the best offer of the year, click here now please.</div>
<div class="content">
  <article>
    <h1>A day in the valley</h1>
    <p>{ARTICLE[0]}</p>
    <div class="share-buttons"><a href="#">Share on Facebook</a> <a href="#">Tweet this story</a></div>
    <p>{ARTICLE[1]}</p>
    <p>{ARTICLE[2]}</p>
  </article>
  <div class="related-posts"><h3>Related</h3><ul>
    <li><a href="/x">Ten things you did not know about rivers and their many valleys</a></li>
    <li><a href="/y">Why the market traders from the hill villages love sharp white cheese</a></li>
  </ul></div>
  <section id="comments"><p>Great article, I visited the valley last summer, the harbour was lovely!</p></section>
</div>
<aside class="sidebar"><p>Subscribe to our newsletter to get the weekly digest of stories like this one.</p></aside>
<footer><p>Copyright 2024 Valley Times, all rights reserved, contact us for licensing.</p></footer>
</body></html>"""


def _texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments if s.kind == "text"]


def test_keeps_main_text_and_drops_boilerplate():
    texts = _texts(extract_document(BOILERPLATE_PAGE, "https://valley.example/story"))
    assert texts == ["A day in the valley", *ARTICLE]


def test_boilerplate_words_do_not_hide_a_wrapped_article():
    page = f"""<html><body><div class="main-menu"><a href="/">Home</a></div>
    <aside class="page-aside"><div class="story"><p>{ARTICLE[0]}</p><p>{ARTICLE[1]}</p></div></aside>
    <div class="teasers"><p><a href="/1">Other story one here</a> <a href="/2">Other story two here</a></p></div>
    </body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == ARTICLE[:2]


def test_images_in_place_with_srcset_picture_lazy_and_base_href():
    page = f"""<html><head><base href="https://cdn.example/media/"></head><body><article>
    <p>{ARTICLE[0]}</p>
    <img src="small.jpg" srcset="small.jpg 320w, large.jpg 1280w, medium.jpg 640w" alt="  The   harbour ">
    <p>{ARTICLE[1]}</p>
    <picture><source srcset="/pics/boat.webp 1x, /pics/boat@2x.webp 2x"><img src="boat.jpg" alt="Boats"></picture>
    <img src="data:image/gif;base64,R0lGOD" data-src="lazy/market.jpg" alt="Market">
    <img data-srcset="//img.example/a.jpg 1x, //img.example/b.jpg 3x">
    <img class="lazy" data-original="https://other.example/quay.png">
    <img src="https://track.example/pixel.gif" width="1" height="1">
    <img src="data:image/png;base64,iVBORw0KGgo=">
    <p>{ARTICLE[2]}</p>
    </article></body></html>"""
    segments = extract_document(page, "https://valley.example/story/")
    assert segments == [
        Segment(kind="text", text=ARTICLE[0]),
        Segment(kind="image", image_url="https://cdn.example/media/large.jpg", text="The harbour"),
        Segment(kind="text", text=ARTICLE[1]),
        Segment(kind="image", image_url="https://cdn.example/pics/boat@2x.webp", text="Boats"),
        Segment(kind="image", image_url="https://cdn.example/media/lazy/market.jpg", text="Market"),
        Segment(kind="image", image_url="https://img.example/b.jpg", text=""),
        Segment(kind="image", image_url="https://other.example/quay.png", text=""),
        Segment(kind="text", text=ARTICLE[2]),
    ]


def test_relative_images_resolve_against_page_url_and_can_be_turned_off():
    page = f'<html><body><div><p>{ARTICLE[0]}</p><img src="../img/a.jpg"><p>{ARTICLE[1]}</p></div></body></html>'
    segments = extract_document(page, "https://valley.example/news/2024/story.html")
    assert [s.image_url for s in segments if s.kind == "image"] == ["https://valley.example/news/img/a.jpg"]
    no_images = extract_document(page, "https://valley.example/", ExtractSettings(keep_images=False))
    assert [s.kind for s in no_images] == ["text", "text"]


def test_link_lists_inside_the_article_are_dropped_and_short_paragraphs_follow_settings():
    page = f"""<html><body><div class="post"><p>{ARTICLE[0]}</p>
    <p><a href="/1">Read also: the harbour at night</a></p><p>Short line.</p><p>{ARTICLE[1]}</p></div></body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == [ARTICLE[0], "Short line.", ARTICLE[1]]
    strict = extract_document(page, "https://valley.example/", ExtractSettings(min_paragraph_chars=20))
    assert _texts(strict) == [ARTICLE[0], ARTICLE[1]]


def test_malformed_html_does_not_crash():
    page = f"<html><body><div><p>{ARTICLE[0]}<p>{ARTICLE[1]}<table><tr><td>{ARTICLE[2]}</div></b></i><img src=x.jpg"
    texts = _texts(extract_document(page, "https://valley.example/"))
    assert texts == ARTICLE
    assert extract_document("<<<>>><p", "https://valley.example/") == []
    declared = '<?xml version="1.0" encoding="utf-8"?><html><body><p>' + ARTICLE[0]
    assert extract_document(declared, "https://v.example/") == [Segment(kind="text", text=ARTICLE[0])]


def test_non_html_and_empty_pages_give_no_segments():
    assert extract_document("", "https://valley.example/") == []
    assert extract_document("just some plain text, no markup at all", "https://valley.example/") == []
    assert extract_document("<html><body><nav><a href='/'>Home</a></nav></body></html>", "https://v.example/") == []
    assert extract_document("<html><body><img src='a.jpg'></body></html>", "https://v.example/") == []


def test_ten_thousand_images_finish_quickly():
    images = "".join(f'<img src="/i/{i}.jpg" alt="image {i}">' for i in range(10_000))
    page = f"<html><body><div class='gallery'><p>{ARTICLE[0]}</p>{images}<p>{ARTICLE[1]}</p></div></body></html>"
    start = time.perf_counter()
    segments = extract_document(page, "https://valley.example/")
    assert time.perf_counter() - start < 2.0
    assert sum(s.kind == "image" for s in segments) == 10_000
    assert segments[0].text == ARTICLE[0] and segments[-1].text == ARTICLE[1]
    assert segments[5000].image_url == "https://valley.example/i/4999.jpg"


def test_short_texts_after_the_last_paragraph_are_dropped():
    page = f"""<html><body><div class="story"><p>{ARTICLE[0]}</p><p>Short middle line.</p><p>{ARTICLE[1]}</p>
    <p>Written by Anna Berg</p><p>Was this article helpful?</p></div></body></html>"""
    texts = _texts(extract_document(page, "https://valley.example/"))
    assert texts == [ARTICLE[0], "Short middle line.", ARTICLE[1]]
    kept = extract_document(page, "https://valley.example/", ExtractSettings(min_tail_chars=10))
    assert _texts(kept)[-2:] == ["Written by Anna Berg", "Was this article helpful?"]


LEAD = "Berlin's river valley is changing fast, and the people who live there are changing with it."
ARTICLE_HEADER = f"""<header class="entry-header"><h1>A day in the valley</h1><div class="excerpt"><p>{LEAD}</p></div>
  <div class="share"><a href="/f">Share on Facebook</a> <a href="/t">Share on Twitter</a> <a href="/m">Send by mail</a>
  <a href="/p">Print this story</a> <a href="/c">Copy the link to this story</a></div></header>"""


def test_title_and_lead_in_the_article_header_join_the_body():
    page = f"""<html><body><main><article>{ARTICLE_HEADER}
      <div class="entry-content"><p>{ARTICLE[0]}</p><p>{ARTICLE[1]}</p><p>{ARTICLE[2]}</p></div>
    </article></main></body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == ["A day in the valley", LEAD, *ARTICLE]


def test_a_link_heavy_header_outside_the_article_is_no_lead():
    page = f"""<html><body>{ARTICLE_HEADER}<article>
      <div class="entry-content"><p>{ARTICLE[0]}</p><p>{ARTICLE[1]}</p><p>{ARTICLE[2]}</p></div>
    </article></body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == ARTICLE


def test_datelines_are_dropped_but_sentences_with_dates_are_kept():
    dated = "The ferry timetable changed on 01.05.2024, and the first boat now leaves at 06:15 every day."
    page = f"""<html><body><div class="story"><p>{ARTICLE[0]}</p><p>12.03.2024, 08:30 Uhr</p>
    <p>Posted 2024-03-12 by the editors</p><p>{dated}</p><p>{ARTICLE[1]}</p></div></body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == [ARTICLE[0], dated, ARTICLE[1]]
    lenient = extract_document(page, "https://valley.example/", ExtractSettings(max_dateline_chars=0))
    assert "12.03.2024, 08:30 Uhr" in _texts(lenient)


def test_labels_before_link_lists_are_dropped_like_headings():
    sources = "These are the sources that we have used for the whole of this long article:"
    page = f"""<html><body><div class="story"><p>{ARTICLE[0]}</p>
    <p>Read more:</p><p><a href="/1">The harbour at night and its lights</a></p>
    <p>Ingredients:</p><p>Two pears, a handful of walnuts and white cheese.</p>
    <p>{ARTICLE[1]}</p><p>{sources}</p><ul><li><a href="/a">Valley archive and its records</a></li></ul>
    <p>{ARTICLE[2]}</p></div></body></html>"""
    texts = _texts(extract_document(page, "https://valley.example/"))
    assert texts == [
        ARTICLE[0], "Ingredients:", "Two pears, a handful of walnuts and white cheese.", ARTICLE[1], sources, ARTICLE[2]
    ]


def test_boilerplate_named_wrapper_holding_most_content_is_not_boilerplate():
    page = f"""<html><body><div class="teasers"><p>Other news from the valley today, in short, for you.</p>
    <p>More news from the valley today, in short, for you.</p></div>
    <div class="content-sidebar-wrap"><div class="post"><p>{ARTICLE[0]}</p><p>{ARTICLE[1]}</p><p>{ARTICLE[2]}</p></div>
    <div class="sidebar"><p>Subscribe to our weekly newsletter, it is free and it is good, really.</p></div></div>
    </body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == ARTICLE
    strict = extract_document(page, "https://valley.example/", ExtractSettings(wrapper_share=1.01))
    assert ARTICLE[0] not in _texts(strict)


def test_camel_case_and_bem_class_names_are_split_into_words():
    page = f"""<html><body><div class="story"><p>{ARTICLE[0]}</p><p>{ARTICLE[1]}</p>
    <div class="ceRelatedArticles"><p>Another story about the valley, its river and its market, told again.</p></div>
    <div class="c-article__authorBox"><p>Anna Berg writes about rivers, valleys and markets for the paper.</p></div>
    <div class="l-wrap--social"><p>{ARTICLE[2]}</p></div></div></body></html>"""
    assert _texts(extract_document(page, "https://valley.example/")) == ARTICLE


def test_deep_nesting_and_huge_pages_finish():
    deep = "<div>" * 100_000 + f"<p>{ARTICLE[0]}</p>"
    assert _texts(extract_document(deep, "https://valley.example/")) in ([], [ARTICLE[0]])
    body = "".join(f"<div class='c'><p>{ARTICLE[i % 3]}</p><a href='/{i}'>link {i}</a></div>" for i in range(10_000))
    page = f"<html><body><div class='story'>{body}</div></body></html>"  # about 3 MB
    start = time.perf_counter()
    segments = extract_document(page, "https://valley.example/")
    assert time.perf_counter() - start < 10.0
    assert len(segments) == 10_000


def test_pages_beyond_max_html_chars_are_cut():
    page = f"<html><body><div class='story'><p>{ARTICLE[0]}</p><p>{ARTICLE[1]}</p></div></body></html>"
    cut = ExtractSettings(max_html_chars=page.index(ARTICLE[1]))
    texts = _texts(extract_document(page, "https://valley.example/", cut))
    assert texts == [ARTICLE[0]]


def test_class_and_id_memo_is_bounded_by_bytes():
    """Unique long class/id values are not all kept (a former ``lru_cache`` of 65,536 entries
    kept every string: 400 pages with 2 MB names grew a worker by 3 GB)."""
    import gc
    import tracemalloc

    from curation import html_extract

    paragraph = f"<p>{ARTICLE[0]}</p>"
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):
            name = f"x{i}-" + "q" * 250_000  # 10 MB of unique names in all
            page = f'<html><body><div class="{name}" id="n{i}">{paragraph}</div></body></html>'
            assert extract_document(page, "https://example.org/") == [Segment(kind="text", text=ARTICLE[0])]
            del name, page
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000

    cache = html_extract._NAMES_CACHE
    for i in range(200_000):  # many unique short names: the memo stays within its byte budget
        html_extract._names_boilerplate(f"entry-{i} block")
    assert cache.bytes <= cache.max_bytes
    assert 0 < len(cache) < 200_000
    assert html_extract._names_boilerplate("site-footer") is True
    assert html_extract._names_boilerplate("has-ads content") is False
