"""Web pages as interleaved documents: WARC response -> :class:`InterleavedDoc`, and per-page image bookkeeping.

Image events are ``(step, reason)`` pairs, one per image reference that leaves
a page, so the pipeline can count an image funnel next to the page funnel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from curation.html_extract import ExtractSettings
from curation.ids import content_id
from curation.page_extraction import FallbackSettings, extract_page
from curation.records import ImageData, InterleavedDoc, Reject
from curation.warc import WarcFailure, WarcResponse, decode_html

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ImageEvent = tuple[str, str]


@dataclass(frozen=True)
class PageSettings:
    """How pages are read and how many images they may keep.

    Attributes:
        max_page_bytes: larger HTML payloads are dropped unparsed (Common Crawl itself truncates at 1 MiB).
        max_images_per_page: image references after this many are dropped before any fetch.
        extract: main-content extraction knobs.
        fallback: when trafilatura extracts a page too (the longer text wins).
    """

    max_page_bytes: int = 10_000_000
    max_images_per_page: int = 30
    extract: ExtractSettings = ExtractSettings()
    fallback: FallbackSettings = FallbackSettings()


def page_id(url: str, date: str) -> str:
    """The id of one capture of a page."""
    return content_id(url, date)


def is_image_response(response: WarcResponse) -> bool:
    return response.content_type.startswith("image/")


def failure_reject(failure: WarcFailure) -> Reject:
    """An unreadable part of a WARC as a ``read`` dead letter."""
    return Reject(
        id=content_id(failure.source, str(failure.offset)),
        source=f"{failure.source}@{failure.offset}",
        step="read",
        reason=failure.reason,
        dead_letter=True,
        detail=failure.detail[:500],
    )


def page_from_response(response: WarcResponse, source: str, settings: PageSettings) -> InterleavedDoc | Reject:
    """Extracts a page's main content, or says why it cannot be a document.

    Args:
        response: an HTTP 200 response record that is not an image.
        source: the WARC file name, for provenance.
        settings: page settings.

    Returns:
        The document (segments in DOM order, no image bytes yet), or a
        :class:`Reject` at step ``read`` (``not_html``, ``page_too_large``) or
        ``extract`` (``parse_error``, ``empty_after_extraction``).
    """
    doc_id = page_id(response.url, response.date)
    where = f"{source}@{response.offset}"

    def dropped(step: str, reason: str, detail: str = "", dead_letter: bool = False) -> Reject:
        return Reject(id=doc_id, source=where, step=step, reason=reason, dead_letter=dead_letter,
                      detail=detail, url=response.url)

    if response.content_type not in HTML_TYPES:
        return dropped("read", "not_html", response.content_type)
    if len(response.body) > settings.max_page_bytes:
        return dropped("read", "page_too_large", f"{len(response.body)} bytes")
    try:
        extraction = extract_page(
            decode_html(response.body, response.charset), response.url, settings.extract, settings.fallback
        )
    except Exception as error:  # lxml gives up on some byte soups: one dead letter, not a crash
        return dropped("extract", "parse_error", repr(error)[:500], dead_letter=True)
    if not extraction.segments:
        return dropped("extract", "empty_after_extraction")
    meta = {
        "warc_date": response.date,
        "warc_record_id": response.record_id,
        "warc_offset": response.offset,
        "extractor": extraction.extractor,
    }
    return InterleavedDoc(id=doc_id, source=where, url=response.url, segments=extraction.segments, meta=meta)


def newest_capture(captures: list[InterleavedDoc]) -> tuple[InterleavedDoc, list[InterleavedDoc]]:
    """Of several captures of one URL, the newest (ties: smallest id) and the rest."""
    by_id = sorted(captures, key=lambda d: d.id)
    ordered = sorted(by_id, key=lambda d: d.meta.get("warc_date", ""), reverse=True)  # stable: ties keep id order
    return ordered[0], ordered[1:]


def select_image_refs(
    doc: InterleavedDoc, judge_url: Callable[[str], tuple[bool, str | None]], max_images: int
) -> tuple[InterleavedDoc, list[ImageEvent]]:
    """Drops image references by URL before anything is fetched.

    In order: URLs the judge refuses (``image_url``, its reason), a URL already
    referenced earlier in the page (``image_url``, ``repeated_in_page``), and
    references beyond ``max_images`` (``image_cap``, ``over_page_limit``).
    """
    kept, events, seen = [], [], set()
    for segment in doc.segments:
        if segment.kind != "image":
            kept.append(segment)
            continue
        ok, reason = judge_url(segment.image_url)
        if not ok:
            events.append(("image_url", reason or "refused"))
        elif segment.image_url in seen:
            events.append(("image_url", "repeated_in_page"))
        elif len(seen) >= max_images:
            events.append(("image_cap", "over_page_limit"))
        else:
            seen.add(segment.image_url)
            kept.append(segment)
    return dataclasses.replace(doc, segments=kept), events


def attach_images(
    doc: InterleavedDoc, outcomes: Mapping[str, ImageData | ImageEvent]
) -> tuple[InterleavedDoc, list[ImageEvent]]:
    """Puts each referenced image's bytes into the page, or drops the reference with its reason.

    Args:
        doc: a page whose image segments hold URLs.
        outcomes: image URL -> the (canonical) image, or the ``(step, reason)`` it failed with.

    Returns:
        The page with ``image_sha256`` set on kept image segments and each image
        stored once in ``images``; a second reference to the same image (after
        exact and perceptual copies were merged) is dropped as ``image_dedup``,
        ``repeated_in_page``.
    """
    segments, images, events = [], {}, []
    for segment in doc.segments:
        if segment.kind != "image":
            segments.append(segment)
            continue
        outcome = outcomes.get(segment.image_url, ("image_fetch", "missing"))
        if isinstance(outcome, tuple):
            events.append(outcome)
        elif outcome.sha256 in images:
            events.append(("image_dedup", "repeated_in_page"))
        else:
            images[outcome.sha256] = outcome
            segments.append(dataclasses.replace(segment, image_sha256=outcome.sha256))
    return dataclasses.replace(doc, segments=segments, images=list(images.values())), events
