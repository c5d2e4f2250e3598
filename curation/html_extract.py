"""Main-content extraction: an HTML page to an interleaved list of text and image segments.

One walk over the parsed tree skips scripts, styles, form controls and hidden
elements, marks navigation, footers, asides, forms, captions and elements whose
class or id names boilerplate (cookie banners, ads, share widgets, comments,
related links, ...; names are split at ``-``, ``_`` and camelCase), and cuts the
page into blocks (the text directly owned by a block-level element, and images)
in DOM order. A marked element that holds most of the page's content text is a
layout wrapper (``content-sidebar-wrap``) and loses its mark. The main content
is chosen the way readability does: blocks with enough text and few links vote
for their three nearest container ancestors, and the best container
(discounted by its link density) wins. It is then widened to the highest
ancestor that adds at least ``climb_ratio`` times more content text than
boilerplate text; siblings that score well join it, and so do the ``<header>``
elements before it in its article (title and lead). Inside that region, marked
and link-heavy blocks are dropped (à la jusText), so are datelines (short
blocks holding a date or a time), headings and labels (``Read more:``) that
introduce nothing but a link list, and short texts after the last long
paragraph; the rest is kept in order, images in place.

Elements are numbered in document order; the walk records each element's
parent and the end of its subtree, so per-subtree sums and "is inside" tests
cost one pass and one comparison instead of repeated ancestor walks.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from urllib.parse import urljoin

from lxml import etree

from curation.records import Segment

_DROP_TAGS = frozenset(
    "script style noscript iframe svg template button select input textarea label "
    "dialog object embed canvas map head link meta".split()
)
_BOILERPLATE_TAGS = frozenset("nav footer aside menu form figcaption".split())
_BLOCK_TAGS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 li ul ol dl dd dt td th tr table tbody thead blockquote pre section article "
    "main figure figcaption header address center details summary hr br body html".split()
)
_CONTAINERS = frozenset("div section article main body td blockquote center form aside header".split())
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_PROTECTED = frozenset("html body main article".split())
_ARTICLE_TAGS = frozenset(("article", "main"))
_BOILERPLATE_ROLES = frozenset("navigation complementary contentinfo dialog alertdialog".split())
_BOILERPLATE_WORDS = frozenset(
    "cookie cookies consent gdpr cmp cookiebar advert advertisement advertising ad ads adsense adslot adbox "
    "sponsor sponsored promo promotion share sharing shares sharebar social socials sharedaddy addthis "
    "comment comments commentlist disqus respond related recommended recommendations newsletter subscribe "
    "subscription sidebar breadcrumb breadcrumbs menu navbar nav navigation footer widget widgets popup modal "
    "pagination pager tagcloud tags login signup skip banner outbrain taboola rss "
    "credit credits copyright byline dateline timestamp date time meta author caption".split()
)
_MODIFIERS = frozenset("has with no without show hide is js".split())
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_SPACE = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_DATE = re.compile(r"\b\d{1,4}[./-]\d{1,2}[./-]\d{2,4}\b|\b\d{1,2}:\d{2}\b")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_LAZY_SRC = ("data-src", "data-original", "data-lazy-src", "data-url", "src")
_LAZY_SRCSET = ("data-srcset", "data-lazy-srcset", "srcset")


@dataclass(frozen=True)
class ExtractSettings:
    """Knobs of :func:`extract_document`.

    Attributes:
        min_paragraph_chars: shortest text block kept (headings are kept from 1 character).
        max_link_density: largest share of a kept block's characters that sit inside links.
        min_scoring_chars: shortest block that votes for its container.
        climb_ratio: the best container is widened to its highest ancestor that adds at least this
            many characters of content text per character of boilerplate text.
        sibling_ratio: a sibling of the best container joins it when it scores this share of the best.
        boilerplate_vote: weight of the votes of blocks inside boilerplate-looking elements.
        long_paragraph_chars: a paragraph this long ends the content proper; after the last one ...
        min_tail_chars: ... only texts at least this long are kept (drops bylines, dates, prompts).
        max_dateline_chars: a block shorter than this that holds a date or a clock time
            (``12.03.2020``, ``2020-03-12``, ``08:30``) is a dateline or byline and dropped.
        max_label_chars: a block shorter than this that ends in a colon (``Read more:``) is a label:
            like a heading, it is kept only when content follows it.
        wrapper_share: a boilerplate-looking element holding at least this share of the page's
            content text is a wrapper (``content-sidebar-wrap``, ``layout-with-sidebar``), not boilerplate.
        max_html_chars: longer pages are cut to this many characters first, which bounds time and
            memory (about 8 s and 300 MB per 10 million characters); main content comes early.
        keep_images: emit image segments.
    """

    min_paragraph_chars: int = 2
    max_link_density: float = 0.5
    min_scoring_chars: int = 25
    climb_ratio: float = 1.5
    sibling_ratio: float = 0.2
    boilerplate_vote: float = 0.25
    long_paragraph_chars: int = 75
    min_tail_chars: int = 40
    max_dateline_chars: int = 60
    max_label_chars: int = 50
    wrapper_share: float = 0.5
    max_html_chars: int = 10_000_000
    keep_images: bool = True

    def __post_init__(self) -> None:
        for name in (
            "min_paragraph_chars", "max_link_density", "min_scoring_chars", "climb_ratio", "sibling_ratio",
            "boilerplate_vote", "long_paragraph_chars", "min_tail_chars", "max_dateline_chars",
            "max_label_chars", "wrapper_share",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.max_html_chars >= 1:
            raise ValueError(f"max_html_chars must be >= 1, got {self.max_html_chars!r}")


@dataclass
class _Block:
    """A text block or an image; ``owner`` and ``marks`` are element numbers (see :class:`_Tree`)."""

    owner: int
    text: str = ""
    link_chars: int = 0
    image_url: str = ""
    heading: bool = False
    marks: tuple[int, ...] = ()


@dataclass
class _Tree:
    """The walked page: elements in document order, their parents and subtree ends, and the blocks.

    Element ``i`` has parent ``parents[i]`` (``-1`` for the root) and its
    subtree is the elements ``i`` to ``ends[i] - 1``.
    """

    tags: list[str]
    parents: list[int]
    ends: list[int]
    blocks: list[_Block]
    headers: list[int]

    def contains(self, outer: int, inner: int) -> bool:
        return outer <= inner < self.ends[outer]

    def subtree_sums(self, values: dict[int, float]) -> list[float]:
        """Per element, the sum of ``values`` (per element number) over its subtree."""
        sums = [0.0] * len(self.tags)
        for i, value in values.items():
            sums[i] = value
        for i in range(len(sums) - 1, 0, -1):
            sums[self.parents[i]] += sums[i]
        return sums

    @cached_property
    def text_sums(self) -> tuple[list[float], list[float]]:
        """Per element, the characters and the link characters of the text blocks in its subtree."""
        chars: dict[int, float] = {}
        links: dict[int, float] = {}
        for block in self.blocks:
            if not block.image_url:
                chars[block.owner] = chars.get(block.owner, 0) + len(block.text)
                links[block.owner] = links.get(block.owner, 0) + block.link_chars
        return self.subtree_sums(chars), self.subtree_sums(links)


@dataclass(frozen=True)
class MainContent:
    """What :func:`main_content` found on a page.

    Attributes:
        segments: the kept text and image segments in DOM order (see :func:`extract_document`).
        page_text_chars: characters of content-like text on the whole page (blocks long enough
            to vote, at most a third links), kept or not: what an extraction could have kept.
    """

    segments: list[Segment]
    page_text_chars: int

    @property
    def text_chars(self) -> int:
        """Characters of the kept text segments."""
        return sum(len(s.text) for s in self.segments if s.kind == "text")


def extract_document(html: str, url: str, settings: ExtractSettings = ExtractSettings()) -> list[Segment]:
    """Extracts the main content of a page as text and image segments in DOM order.

    Args:
        html: the decoded page.
        url: the page URL; image URLs are resolved against it (and ``<base href>``).
        settings: extraction knobs.

    Returns:
        ``Segment(kind="text", text=...)`` per kept paragraph and
        ``Segment(kind="image", image_url=..., text=alt)`` per kept image; empty
        when the input is not HTML or nothing is left.
    """
    return main_content(html, url, settings).segments


def main_content(html: str, url: str, settings: ExtractSettings = ExtractSettings()) -> MainContent:
    """:func:`extract_document`'s segments, with how much content-like text the page held."""
    root = _parse(html[: settings.max_html_chars])
    if root is None:
        return MainContent([], 0)
    tree = _Walker(_base_url(root, url), settings).run(root)
    page_text_chars = sum(len(b.text) for b in tree.blocks if _votes(b, settings))
    return MainContent(_kept_segments(tree, settings), page_text_chars)


def _kept_segments(tree: _Tree, settings: ExtractSettings) -> list[Segment]:
    region = _main_region(tree, settings)
    if not region:
        return []
    top = region[0]
    kept = [
        b
        for b in tree.blocks
        if any(tree.contains(r, b.owner) for r in region) and all(tree.contains(m, top) for m in b.marks)
    ]
    segments = []
    for i, block in enumerate(kept):
        if block.image_url:
            segments.append(Segment(kind="image", image_url=block.image_url, text=block.text))
        elif _good(block, settings) and (not _introducer(block, settings) or _introduces(kept, i, settings)):
            segments.append(Segment(kind="text", text=block.text))
    segments = _trim_tail(segments, settings)
    if not any(s.kind == "text" for s in segments):
        return []
    return segments


def _trim_tail(segments: list[Segment], settings: ExtractSettings) -> list[Segment]:
    """Drops short texts after the last long paragraph (bylines, dates, "Was this helpful?")."""
    ends = [i for i, s in enumerate(segments) if s.kind == "text" and len(s.text) >= settings.long_paragraph_chars]
    if not ends:
        return segments
    tail = segments[ends[-1] + 1 :]
    return segments[: ends[-1] + 1] + [s for s in tail if s.kind == "image" or len(s.text) >= settings.min_tail_chars]


def _good(block: _Block, settings: ExtractSettings) -> bool:
    """Whether a text block is long enough, not a dateline, and not mostly links."""
    shortest = 1 if block.heading else settings.min_paragraph_chars
    if len(block.text) < shortest or (len(block.text) < settings.max_dateline_chars and _DATE.search(block.text)):
        return False
    return block.link_chars / len(block.text) <= settings.max_link_density


def _introducer(block: _Block, settings: ExtractSettings) -> bool:
    """Whether a text block announces what follows: a heading, or a short label ending in a colon."""
    return block.heading or (len(block.text) < settings.max_label_chars and block.text.endswith(":"))


def _introduces(blocks: list[_Block], i: int, settings: ExtractSettings) -> bool:
    """Whether ``blocks[i]`` is followed by content (not by a link list, as "Related posts:" is)."""
    for block in islice(blocks, i + 1, None):
        if not block.image_url:
            return block.heading or _good(block, settings)
    return False


def _parse(html: str) -> etree._Element | None:
    if not html or "<" not in html:
        return None
    parser = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        return etree.fromstring(html.encode("utf-8", errors="replace"), parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None


def _base_url(root: etree._Element, url: str) -> str:
    for base in root.iter("base"):
        href = (base.get("href") or "").strip()
        if href:
            return urljoin(url, href)
    return url


class _BoundedCache:
    """A least-recently-used ``str -> bool`` memo bounded by the bytes of its keys, not their count.

    Keys longer than ``max_key_chars`` are not kept (computing them again costs what reading
    them does), and the oldest entries go once the keys hold more than ``max_bytes``.
    Safe to share between threads.
    """

    def __init__(self, max_bytes: int, max_key_chars: int) -> None:
        self.max_bytes = max_bytes
        self.max_key_chars = max_key_chars
        self.bytes = 0
        self._entries: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bool | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bool) -> None:
        if len(key) > self.max_key_chars:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self.bytes += sys.getsizeof(key)
            while self.bytes > self.max_bytes and self._entries:
                old, _ = self._entries.popitem(last=False)
                self.bytes -= sys.getsizeof(old)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


_NAMES_CACHE = _BoundedCache(max_bytes=8 << 20, max_key_chars=1024)


def _names_boilerplate(names: str) -> bool:
    """Whether class and id names (space-separated) name boilerplate (memoized in ``_NAMES_CACHE``).

    Each name counts up to a state modifier (``has-ads``, ``no-sidebar``) or a
    BEM modifier (``l-outer--nav`` gives ``l``, ``outer``).
    """
    known = _NAMES_CACHE.get(names)
    if known is None:
        known = _scan_names(names)
        _NAMES_CACHE.put(names, known)
    return known


def _scan_names(names: str) -> bool:
    for name in names.split():
        for part in map(str.lower, _TOKEN.findall(name.split("--")[0])):
            if part in _MODIFIERS:
                break
            if part in _BOILERPLATE_WORDS:
                return True
    return False


def _hidden(el: etree._Element) -> bool:
    style = el.get("style")
    return el.get("hidden") is not None or (style is not None and _HIDDEN_STYLE.search(style) is not None)


def _looks_boilerplate(el: etree._Element, tag: str) -> bool:
    """Navigation, footers, asides, forms, ARIA landmarks of the same and boilerplate class/id names."""
    if tag in _BOILERPLATE_TAGS or el.get("aria-hidden") == "true" or el.get("role") in _BOILERPLATE_ROLES:
        return True
    names = f"{el.get('class', '')} {el.get('id', '')}"
    return len(names) > 1 and _names_boilerplate(names)


class _Walker:
    """One pass over the parsed page: numbers elements, skips dropped ones, cuts blocks.

    Boilerplate-looking elements are not removed but recorded as marks on the
    blocks inside them: their blocks vote less for the main content and are kept
    only when the main content lies inside them (some sites wrap the article in
    an ``<aside>`` or a ``class="has-ads"`` section). A page ``<header>`` outside
    any article is a mark only if more than 30% of its text is links, and
    wrappers lose their marks (see :func:`_resolve_marks`).
    """

    def __init__(self, base: str, settings: ExtractSettings) -> None:
        self.base = base
        self.settings = settings
        self.tags: list[str] = []
        self.parents: list[int] = []
        self.ends: list[int] = []
        self.blocks: list[_Block] = []
        self.headers: list[int] = []
        self.page_headers: list[int] = []
        self.parts: list[str] = []
        self.link_chars = 0

    def run(self, root: etree._Element) -> _Tree:
        self.walk(root, -1, (-1, (), False), (), False, False)
        tree = _Tree(self.tags, self.parents, self.ends, self.blocks, self.headers)
        _resolve_marks(tree, self.page_headers, self.settings)
        return tree

    def walk(
        self,
        el: etree._Element,
        parent: int,
        owner: tuple[int, tuple[int, ...], bool],
        marks: tuple[int, ...],
        in_link: bool,
        in_article: bool,
    ) -> None:
        """Visits ``el``; ``owner`` is the enclosing block element (number, marks, is a heading) and
        ``marks`` the boilerplate-looking ancestors."""
        tag = el.tag
        if not isinstance(tag, str) or tag in _DROP_TAGS or _hidden(el):
            self.add(el.tail, in_link)
            return
        number = len(self.tags)
        self.tags.append(tag)
        self.parents.append(parent)
        self.ends.append(number + 1)
        if tag not in _PROTECTED:
            if _looks_boilerplate(el, tag):
                marks = (*marks, number)
            elif tag == "header" and not in_article:
                marks = (*marks, number)
                self.page_headers.append(number)
        if tag == "header":
            self.headers.append(number)
        if tag == "img" or tag == "picture":
            self.flush(owner)
            image = _image(el, self.base) if self.settings.keep_images else None
            if image is not None:
                self.blocks.append(_Block(owner[0], image[1], image_url=image[0], marks=marks))
            self.add(el.tail, in_link)
            return
        block = tag in _BLOCK_TAGS
        if block:
            self.flush(owner)
            owner = (number, marks, owner[2] or tag in _HEADINGS)
        in_link = in_link or tag == "a"
        in_article = in_article or tag in _ARTICLE_TAGS
        self.add(el.text, in_link)
        for child in el:
            self.walk(child, number, owner, marks, in_link, in_article)
        if block:
            self.flush(owner)
        self.ends[number] = len(self.tags)
        self.add(el.tail, in_link and tag != "a")

    def add(self, text: str | None, in_link: bool) -> None:
        if text:
            self.parts.append(text)
            if in_link:
                self.link_chars += len(text) - text.count(" ") - text.count("\n") + 1

    def flush(self, owner: tuple[int, tuple[int, ...], bool]) -> None:
        if not self.parts:
            return
        text = _SPACE.sub(" ", _INVISIBLE.sub("", "".join(self.parts))).strip()
        if text:
            link_chars = min(self.link_chars, len(text))
            self.blocks.append(_Block(owner[0], text, link_chars, heading=owner[2], marks=owner[1]))
        self.parts.clear()
        self.link_chars = 0


def _resolve_marks(tree: _Tree, headers: list[int], settings: ExtractSettings) -> None:
    """Unmarks page headers whose text is mostly not links, and wrappers holding most of the content."""
    chars, links = tree.text_sums
    plain = {h for h in headers if chars[h] and links[h] / chars[h] <= 0.3}
    content: dict[int, float] = {}
    for block in tree.blocks:
        if _votes(block, settings):
            content[block.owner] = content.get(block.owner, 0) + len(block.text)
    content_sums = tree.subtree_sums(content)
    if content_sums and content_sums[0]:
        least = settings.wrapper_share * content_sums[0]
        plain |= {m for block in tree.blocks for m in block.marks if content_sums[m] >= least}
    if plain:
        for block in tree.blocks:
            if block.marks:
                block.marks = tuple(m for m in block.marks if m not in plain)


def _image(el: etree._Element, base: str) -> tuple[str, str] | None:
    """Resolved URL and alt text of an ``<img>`` or ``<picture>``, or ``None`` to skip it."""
    img = el if el.tag == "img" else next(el.iter("img"), None)
    candidates = []
    if el.tag == "picture":
        for source in el.iter("source"):
            candidates.append(_largest(source.get("data-srcset") or source.get("srcset") or ""))
    if img is not None:
        if _is_pixel(img):
            return None
        for attr in _LAZY_SRCSET:
            candidates.append(_largest(img.get(attr) or ""))
        for attr in _LAZY_SRC:
            candidates.append((img.get(attr) or "").strip())
    for src in candidates:
        if src and not src.lower().startswith(("data:", "javascript:", "about:")):
            alt = _SPACE.sub(" ", img.get("alt") or "").strip() if img is not None else ""
            return urljoin(base, src), alt
    return None


def _largest(srcset: str) -> str:
    """The largest candidate of a ``srcset`` (by ``w`` or ``x`` descriptor), or ``""``."""
    best, best_size = "", -1.0
    for candidate in srcset.split(","):
        fields = candidate.split()
        if not fields or fields[0].lower().startswith("data:"):
            continue
        size = 1.0
        if len(fields) > 1 and fields[1][-1:] in ("w", "x"):
            try:
                size = float(fields[1][:-1])
            except ValueError:
                size = 1.0
        if size > best_size:
            best, best_size = fields[0], size
    return best


def _is_pixel(img: etree._Element) -> bool:
    width, height = (img.get(a, "").strip().removesuffix("px") for a in ("width", "height"))
    return width in ("0", "1") or height in ("0", "1")


def _votes(block: _Block, settings: ExtractSettings) -> bool:
    """Whether a block is content-like text: long enough and at most a third links."""
    return (
        not block.image_url
        and len(block.text) >= settings.min_scoring_chars
        and block.link_chars / len(block.text) <= 0.33
    )


def _main_region(tree: _Tree, settings: ExtractSettings) -> list[int]:
    """The elements holding the main content: the best container, widened, its good siblings and
    the headers before it in its article (titles and leads, see :func:`_leads`)."""
    scores: dict[int, float] = {}
    for block in tree.blocks:
        if not _votes(block, settings):
            continue
        score = 1 + block.text.count(",") + min(len(block.text) // 100, 3)
        if block.marks:
            score *= settings.boilerplate_vote
        level, el = 0, tree.parents[block.owner]
        while level < 3 and el >= 0:
            if tree.tags[el] in _CONTAINERS:
                scores[el] = scores.get(el, 0.0) + score / (level + 1)
                level += 1
            el = tree.parents[el]
    if not scores:
        return []
    chars, links = tree.text_sums
    final = {el: score * (1 - min(links[el] / chars[el], 1.0) if chars[el] else 0.0) for el, score in scores.items()}
    best = max(final, key=final.get)
    top = _widen(tree, best, settings)
    parent = tree.parents[top]
    threshold = max(3.0, final[best] * settings.sibling_ratio)
    siblings = sorted(el for el, score in final.items() if el != top and tree.parents[el] == parent >= 0)
    return [top, *(el for el in siblings if final[el] >= threshold), *_leads(tree, top)]


def _leads(tree: _Tree, top: int) -> list[int]:
    """The ``<header>`` elements before ``top`` inside its nearest ``<article>`` or ``<main>``.

    News and blog templates put the title and the lead (standfirst, excerpt)
    in an article header next to the body; marked parts of it (share
    buttons, bylines) are still dropped by their marks.
    """
    article = tree.parents[top]
    while article >= 0 and tree.tags[article] not in _ARTICLE_TAGS:
        article = tree.parents[article]
    if article < 0:
        return []
    return [h for h in tree.headers if article < h < top and not tree.contains(h, top)]


def _widen(tree: _Tree, top: int, settings: ExtractSettings) -> int:
    """Climbs from ``top`` to the highest ancestor that adds more content text than boilerplate text.

    Content text is the text of blocks with few links outside boilerplate-looking
    elements; boilerplate text is everything else (link lists, menus, asides).
    """
    content: dict[int, float] = {}
    noise: dict[int, float] = {}
    for block in tree.blocks:
        if block.image_url:
            continue
        tally = content if not block.marks and block.link_chars / len(block.text) <= 0.33 else noise
        tally[block.owner] = tally.get(block.owner, 0) + len(block.text)
    content_sums, noise_sums = tree.subtree_sums(content), tree.subtree_sums(noise)
    best, el = top, tree.parents[top]
    while el >= 0 and tree.tags[el] != "html":
        gained = content_sums[el] - content_sums[best]
        cost = noise_sums[el] - noise_sums[best]
        if gained > 0 and gained >= settings.climb_ratio * cost:
            best = el
        el = tree.parents[el]
    return best
