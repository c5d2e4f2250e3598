"""A generated Common Crawl-style WARC with planted cases, for tests and the demo of ``curate interleaved``.

The pages are English prose on the topics of :mod:`sampledata.text`,
wrapped in boilerplate (navigation, cookie banner, sidebar, footer) and laid out
in several ways (``<figure>`` with ``srcset``, ``<picture>``, lazy ``data-src``,
relative URLs under ``<base href>``). Their images travel as image ``response``
records in the same WARC, as a crawler that fetched them would store them.

Planted, each with the step that must act on it (see :class:`WarcCorpus`):
an exact copy and a near copy (two words edited) of a page, the same URL
crawled twice, a header picture on many pages (re-encoded on half of them, so
only perceptual dedup sees how often it recurs), an image repeated inside a
page, an image named like an icon, images too small or too thin, a French page,
a page of link lists, a page that is not HTML, a page with no main content, a
page declared ``windows-1252`` and a truncated gzip member; optionally a 50 MB
page and a page with 10,000 images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from sampledata.pairs import render_image
from sampledata.text import TOPICS, edit_words, topic_document

SITE = "https://news.example.test"
HEADER_PICTURE = f"{SITE}/media/header-picture.jpg"
HEADER_PICTURE_VARIANT = f"{SITE}/media/header-picture-q70.jpg"
HEADER_PAGES = 12  # more than the default limit of 10 distinct pages per image
FRENCH = (
    "Le chat dort sur la table de la cuisine pendant que nous preparons le repas du soir avec les enfants. "
    "Il fait beau et la maison est calme, alors nous restons dehors jusqu'a la nuit tombee."
)
_CRAWL_DATE = "2026-03-0{day}T12:00:00Z"


@dataclass
class WarcCorpus:
    """A generated WARC and what was planted in it.

    Attributes:
        data: the ``.warc.gz`` bytes (one gzip member per record).
        pages: URL of every HTML page record, in file order (a URL crawled twice appears twice).
        survivors: URLs of the pages that must reach the shards with the default settings.
        dropped: URL -> the funnel step that must drop the page.
        images: image URL -> encoded bytes, as stored in the WARC's image records.
        duplicate_groups: URLs of mutual duplicates, of which exactly one page must survive.
        removed_images: image URL -> the image step that must remove it from every surviving page.
        texts: URL -> a sentence the page's extracted text must contain, as written.
    """

    data: bytes = b""
    pages: list[str] = field(default_factory=list)
    survivors: set[str] = field(default_factory=set)
    dropped: dict[str, str] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    removed_images: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


class _Writer:
    """Appends gzip members, one WARC record each, and remembers the planted facts."""

    def __init__(self) -> None:
        self.members: list[bytes] = []
        self.corpus = WarcCorpus()

    def response(self, url: str, body: bytes, content_type: str, day: int = 1) -> None:
        buffer = io.BytesIO()
        writer = WARCWriter(buffer, gzip=True)
        headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
        record = writer.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(body),
            http_headers=headers,
            warc_headers_dict={"WARC-Date": _CRAWL_DATE.format(day=day)},
        )
        writer.write_record(record)
        self.members.append(buffer.getvalue())
        if content_type.startswith("text/html"):
            self.corpus.pages.append(url)

    def image(self, url: str, data: bytes) -> str:
        self.corpus.images[url] = data
        self.response(url, data, "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png")
        return url

    def truncated(self, url: str, body: bytes) -> None:
        self.response(url, body, "text/html; charset=utf-8")
        self.corpus.pages.pop()
        self.members[-1] = self.members[-1][: len(self.members[-1]) // 2]


def _reencoded(data: bytes, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _boilerplate(body: str, title: str, base: str = "") -> str:
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>{base}
<script>window.tracker = {{page: "{title}"}};</script><style>.nav {{ color: red }}</style></head>
<body>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience. <a href="/privacy">Accept</a></div>
<nav class="navbar"><a href="/">Home</a> <a href="/world">World</a> <a href="/science">Science</a>
<a href="/sport">Sport</a> <a href="/money">Money</a></nav>
<div class="layout"><main><article><h1>{title}</h1>
{body}
</article></main>
<aside class="sidebar"><h3>Most read</h3><ul><li><a href="/a">Ten things you missed this week</a></li>
<li><a href="/b">The quiet rise of the morning market</a></li></ul></aside></div>
<footer class="site-footer">Copyright 2026 Example News. All rights reserved. <a href="/terms">Terms</a></footer>
</body></html>"""


def _paragraphs(text: str) -> list[str]:
    return [f"<p>{paragraph}</p>" for paragraph in text.split("\n\n")]


def _figure(src: str, alt: str, layout: int) -> str:
    """An image in one of four markups: plain, ``<figure>`` + ``srcset``, ``<picture>``, lazy."""
    if layout == 0:
        return f'<img src="{src}" alt="{alt}">'
    if layout == 1:
        return f'<figure><img src="/media/thumb.gif" srcset="{src} 800w, /media/x-small.jpg 200w" alt="{alt}"></figure>'
    if layout == 2:
        return f'<picture><source srcset="{src}" type="image/jpeg"><img src="{src}" alt="{alt}"></picture>'
    return f'<img class="lazy" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="{src}" alt="{alt}">'


def _article(paragraphs: list[str], figures: list[str], title: str, base: str = "") -> str:
    """Paragraphs with a figure after the first, and one after every second paragraph after that."""
    body = []
    pending = list(figures)
    for index, paragraph in enumerate(paragraphs):
        body.append(paragraph)
        if pending and (index == 0 or index % 2 == 1):
            body.append(pending.pop(0))
    body.extend(pending)
    return _boilerplate("\n".join(body), title, base)


def make_warc_corpus(seed: int = 0, hostile: bool = False) -> WarcCorpus:
    """A WARC of about 30 pages and their images, with the planted cases of this module's docstring.

    Args:
        seed: seeds the prose and the pictures.
        hostile: also plant a 50 MB page and a page with 10,000 images (both valid
            HTML; the pipeline must finish on them).
    """
    rng = np.random.default_rng(seed)
    out = _Writer()
    corpus = out.corpus
    header = out.image(HEADER_PICTURE, render_image(seed * 1000 + 999, 640, 360, "jpg"))
    variant = out.image(HEADER_PICTURE_VARIANT, _reencoded(corpus.images[header], quality=70))
    topics = list(TOPICS)

    def add_page(url: str, text: str, extra_images: list[str], day: int = 1, layout: int = 0, **kwargs) -> None:
        picture = out.image(f"{url}/photo.jpg", render_image(len(corpus.pages) + seed * 1000, 480, 320, "jpg"))
        figures = [_figure(picture, "A photo for the story", layout), *extra_images]
        html = _article(_paragraphs(text), figures, url.rsplit("/", 1)[-1].replace("-", " "), **kwargs)
        out.response(url, html.encode("utf-8"), "text/html; charset=utf-8", day=day)

    # Ordinary stories: the header picture on HEADER_PAGES of them, the re-encoded copy on half.
    for index in range(HEADER_PAGES + 4):
        url = f"{SITE}/{topics[index % len(topics)]}/story-{index}"
        extra = []
        if index < HEADER_PAGES:
            extra.append(_figure(variant if index % 2 else header, "Today's header", 0))
            corpus.removed_images[variant if index % 2 else header] = "image_dedup"
        add_page(url, topic_document(rng, topics[index % len(topics)], 4), extra, layout=index % 4)
        corpus.survivors.add(url)

    # Duplicates: an exact copy and a near copy of story-0 at other URLs; one URL crawled twice.
    original = topic_document(rng, "cooking", 4)
    add_page(f"{SITE}/cooking/original", original, [])
    add_page(f"{SITE}/mirror/original-copy", original, [])
    add_page(f"{SITE}/mirror/original-edited", edit_words(rng, original, 2), [])
    corpus.duplicate_groups.append(
        [f"{SITE}/cooking/original", f"{SITE}/mirror/original-copy", f"{SITE}/mirror/original-edited"]
    )
    recrawled = f"{SITE}/astronomy/recrawled"
    add_page(recrawled, topic_document(rng, "astronomy", 4), [], day=1)
    add_page(recrawled, topic_document(rng, "astronomy", 4), [], day=5)  # the newer capture must win
    corpus.survivors.add(recrawled)

    # Images that must go while their page stays.
    url = f"{SITE}/finance/images-to-drop"
    repeated = f"{url}/photo.jpg"
    icon = out.image(f"{SITE}/static/share-icon.png", render_image(seed + 5, 200, 200, "png"))
    small = out.image(f"{SITE}/media/tiny.jpg", render_image(seed + 6, 100, 100, "jpg"))
    thin = out.image(f"{SITE}/media/strip.jpg", render_image(seed + 7, 600, 150, "jpg"))
    add_page(
        url,
        topic_document(rng, "finance", 4),
        [_figure(repeated, "The same photo again", 0), _figure(icon, "share", 0), _figure(small, "tiny", 0),
         _figure(thin, "a strip", 0)],
    )
    corpus.survivors.add(url)
    corpus.removed_images.update({icon: "image_url", small: "image_quality", thin: "image_quality"})

    # Pages that must go.
    only_small = f"{SITE}/football/only-small-image"
    small_only = out.image(f"{only_small}/small.jpg", render_image(seed + 8, 120, 90, "jpg"))
    html = _boilerplate("\n".join(_paragraphs(topic_document(rng, "football", 4)) + [_figure(small_only, "", 0)]),
                        "only small image")
    out.response(only_small, html.encode("utf-8"), "text/html; charset=utf-8")
    corpus.dropped[only_small] = "images"
    french = f"{SITE}/fr/le-chat"
    add_page(french, "\n\n".join([FRENCH] * 4), [])
    corpus.dropped[french] = "language"
    links = f"{SITE}/football/link-list"
    link_items = "".join(f"<p>Match report {i}: see the full table here!!! ### >>></p>" for i in range(30))
    out.response(links, _boilerplate(link_items, "links").encode("utf-8"), "text/html; charset=utf-8")
    corpus.dropped[links] = "text_quality"
    pdf = f"{SITE}/files/report.pdf"
    out.response(pdf, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\n", "application/pdf")
    corpus.dropped[pdf] = "read"
    empty = f"{SITE}/empty"
    empty_html = '<html><body><nav><a href="/">Home</a></nav><script>var x = 1;</script></body></html>'
    out.response(empty, empty_html.encode("utf-8"), "text/html; charset=utf-8")
    corpus.dropped[empty] = "extract"

    # A page declared windows-1252 only in its <meta>, with non-ASCII letters; it must survive intact.
    latin = f"{SITE}/cooking/cafe"
    latin_text = topic_document(rng, "cooking", 4) + "\n\nThe café served a crème brûlée that the naïve critic loved."
    picture = out.image(f"{latin}/photo.jpg", render_image(seed + 9, 400, 300, "jpg"))
    html = _article(_paragraphs(latin_text), [_figure(picture, "café", 0)], "cafe").replace(
        '<meta charset="utf-8">', '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
    )
    out.response(latin, html.encode("cp1252"), "text/html")
    corpus.survivors.add(latin)
    corpus.texts[latin] = "The café served a crème brûlée that the naïve critic loved."

    # A relative image under <base href>, and a member cut in half: what follows must still be read.
    based = f"{SITE}/science/based"
    out.image(f"{SITE}/cdn/based-photo.jpg", render_image(seed + 10, 500, 400, "jpg"))
    html = _article(_paragraphs(topic_document(rng, "astronomy", 4)), [_figure("based-photo.jpg", "based", 0)],
                    "based", base=f'<base href="{SITE}/cdn/">')
    out.truncated(f"{SITE}/science/cut-short", html.encode("utf-8"))
    out.response(based, html.encode("utf-8"), "text/html; charset=utf-8")
    corpus.survivors.add(based)

    if hostile:
        _add_hostile(out, rng)
    corpus.data = b"".join(out.members)
    return corpus


def _add_hostile(out: _Writer, rng: np.random.Generator) -> None:
    """A 50 MB page (its article repeated) and a page with 10,000 images."""
    corpus = out.corpus
    huge = f"{SITE}/hostile/fifty-megabytes"
    paragraph = "<p>" + topic_document(rng, "finance", 1) + "</p>\n"
    body = paragraph * (50_000_000 // len(paragraph) + 1)
    out.response(huge, _boilerplate(body, "huge").encode("utf-8"), "text/html; charset=utf-8")
    corpus.dropped[huge] = "read"
    many = f"{SITE}/hostile/ten-thousand-images"
    figures = "".join(f'<img src="/media/many/{i}.jpg" alt="">' for i in range(10_000))
    html = _boilerplate("\n".join(_paragraphs(topic_document(rng, "finance", 4))) + figures, "many images")
    out.response(many, html.encode("utf-8"), "text/html; charset=utf-8")
    corpus.dropped[many] = "images"


def make_fetch_warc(image_base_url: str, seed: int = 0) -> WarcCorpus:
    """Two pages whose images the WARC lacks: they must be fetched from ``image_base_url``.

    Both pages show the same good picture (one fetch must serve both) and, each,
    one image that fails: a 404, a corrupt file, and a redirect to the forbidden host.
    """
    rng = np.random.default_rng(seed)
    out = _Writer()
    good = f"{image_base_url}/img/{seed + 11}-400x300.jpg"
    failing = [
        [f"{image_base_url}/missing/photo.jpg", f"{image_base_url}/redirect-forbidden/{seed + 12}"],
        [f"{image_base_url}/corrupt/{seed + 13}.jpg"],
    ]
    for index, bad in enumerate(failing):
        url = f"{SITE}/fetched/page-{index}"
        figures = [_figure(good, "A fetched photo", 0), *(_figure(src, "", 0) for src in bad)]
        html = _article(_paragraphs(topic_document(rng, "astronomy", 4)), figures, f"fetched {index}")
        out.response(url, html.encode("utf-8"), "text/html; charset=utf-8")
        out.corpus.survivors.add(url)
    out.corpus.data = b"".join(out.members)
    return out.corpus
