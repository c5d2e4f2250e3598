"""Main content with a second opinion: :mod:`curation.html_extract` first, trafilatura when that looks poor.

The first pass (:func:`curation.html_extract.main_content`) also says how much
content-like text the page held. When it kept less than ``max_share`` of that
and fewer than ``max_chars`` characters, it may have picked the wrong region of
the page, so trafilatura (``fast=True``: its own fallbacks off) extracts the page
too, and the longer of the two texts wins, as trafilatura itself arbitrates
between its extractors. The rule and its defaults were chosen by
cross-validation on labelled real pages (``bench/bench_extraction.py``): on
the development pages about one page in six gets the second pass, and the
second pass wins on about one in nine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from lxml import etree

from curation.html_extract import ExtractSettings, MainContent, main_content
from curation.records import Segment

PRIMARY = "html_extract"
TRAFILATURA = "trafilatura"
FALLBACKS = (TRAFILATURA, "none")
_SPACE = re.compile(r"\s+")
_CONTAINER_TAGS = frozenset("list table row div main".split())


@dataclass(frozen=True)
class FallbackSettings:
    """When a second extractor looks at a page.

    Attributes:
        extractor: ``trafilatura``, or ``none`` to keep the first pass always.
        max_share: the second pass runs when the first kept less than this share of the
            page's content-like text ...
        max_chars: ... and fewer than this many characters of text.
    """

    extractor: str = TRAFILATURA
    max_share: float = 0.7
    max_chars: int = 3000

    def __post_init__(self) -> None:
        if self.extractor not in FALLBACKS:
            raise ValueError(f"extractor must be one of {', '.join(FALLBACKS)}, got {self.extractor!r}")
        if not 0 <= self.max_share <= 1:
            raise ValueError(f"max_share must be in [0, 1], got {self.max_share!r}")
        if not self.max_chars >= 0:
            raise ValueError(f"max_chars must be >= 0, got {self.max_chars!r}")

    def wants_second_pass(self, first: MainContent) -> bool:
        """Whether ``first`` looks poor enough to ask the second extractor."""
        return (
            self.extractor != "none"
            and first.text_chars < self.max_chars
            and first.text_chars < self.max_share * first.page_text_chars
        )


@dataclass(frozen=True)
class Extraction:
    """A page's main content and the extractor that gave it (``html_extract`` or ``trafilatura``)."""

    segments: list[Segment]
    extractor: str


def extract_page(
    html: str, url: str, settings: ExtractSettings = ExtractSettings(), fallback: FallbackSettings = FallbackSettings()
) -> Extraction:
    """Extracts a page's main content, asking trafilatura too when the first pass looks poor.

    Args:
        html: the decoded page.
        url: the page URL, for resolving image URLs.
        settings: knobs of the first pass (``max_html_chars`` and ``keep_images`` hold for both).
        fallback: when the second pass runs.

    Returns:
        The segments of the extractor with the longer text (the first pass on a tie).
    """
    first = main_content(html, url, settings)
    if not fallback.wants_second_pass(first):
        return Extraction(first.segments, PRIMARY)
    second = trafilatura_segments(html[: settings.max_html_chars], url, settings.keep_images)
    if sum(len(s.text) for s in second if s.kind == "text") > first.text_chars:
        return Extraction(second, TRAFILATURA)
    return Extraction(first.segments, PRIMARY)


def trafilatura_segments(html: str, url: str, keep_images: bool = True) -> list[Segment]:
    """trafilatura's main content (XML output, ``fast=True``) as text and image segments in its order.

    Lists, tables and rows are opened; every other element (paragraph,
    heading, quote, code, list item, table cell) is a text segment; ``<graphic>`` elements are image segments (URL resolved against
    ``url``, alt text from ``alt`` or ``title``), placed after the text of the
    block that holds them.
    """
    import trafilatura

    xml = trafilatura.extract(
        html, url=url, output_format="xml", fast=True, include_images=keep_images, include_comments=False,
        include_tables=True,
    )
    if not xml:
        return []
    main = etree.fromstring(xml.encode("utf-8")).find("main")
    segments: list[Segment] = []
    if main is not None:
        _collect(main, url, segments)
    return segments


def _collect(el: etree._Element, url: str, segments: list[Segment]) -> None:
    for child in el:
        if child.tag == "graphic":
            _add_image(child, url, segments)
        elif child.tag in _CONTAINER_TAGS:
            _collect(child, url, segments)
        else:
            text = _SPACE.sub(" ", "".join(child.itertext())).strip()
            if text:
                segments.append(Segment(kind="text", text=text))
            for graphic in child.iter("graphic"):
                _add_image(graphic, url, segments)


def _add_image(graphic: etree._Element, url: str, segments: list[Segment]) -> None:
    src = (graphic.get("src") or "").strip()
    if src and not src.lower().startswith(("data:", "javascript:", "about:")):
        alt = _SPACE.sub(" ", graphic.get("alt") or graphic.get("title") or "").strip()
        segments.append(Segment(kind="image", image_url=urljoin(url, src), text=alt))
