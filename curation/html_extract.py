"""Main-content extraction: an HTML page to an interleaved list of text and image segments.

Scripts, styles, form controls and hidden elements are removed; navigation,
footers, asides, forms, captions and elements whose class or id names
boilerplate (cookie banners, ads, share widgets, comments, related links, ...)
are marked. The page is cut into blocks (the text directly owned by a
block-level element, and images) in DOM order. The main content is chosen the
way readability does: blocks with enough text and few links vote for their three
nearest container ancestors, and the best container (discounted by its link
density) wins. It is then widened to the highest ancestor that adds at least
``climb_ratio`` times more content text than boilerplate text, and siblings that
score well join it. Inside that region, marked and link-heavy blocks are
dropped (à la jusText), headings that introduce nothing (``Related posts``
before a link list) too, and the rest is kept in order, images in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from lxml import etree, html as lxml_html

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
_BOILERPLATE_WORDS = frozenset(
    "cookie cookies consent gdpr cmp cookiebar advert advertisement advertising ad ads adsense adslot adbox "
    "sponsor sponsored promo promotion share sharing shares sharebar social socials sharedaddy addthis "
    "comment comments commentlist disqus respond related recommended recommendations newsletter subscribe "
    "subscription sidebar breadcrumb breadcrumbs menu navbar nav navigation footer widget widgets popup modal "
    "pagination pager tagcloud tags login signup skip banner outbrain taboola rss "
    "credit credits copyright byline dateline timestamp date time meta author caption".split()
)
_MODIFIERS = frozenset("has with no without show hide is js".split())
_TOKEN = re.compile(r"[a-z]+")
_SPACE = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
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
    keep_images: bool = True


@dataclass
class _Block:
    owner: etree._Element
    text: str = ""
    link_chars: int = 0
    image_url: str = ""
    heading: bool = False
    boilerplate: tuple[etree._Element, ...] = ()


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
    root = _parse(html)
    if root is None:
        return []
    base = _base_url(root, url)
    boilerplate = _clean(root)
    blocks = _blocks(root, base, boilerplate, settings)
    region = _main_region(blocks, settings)
    if not region:
        return []
    holders = {region[0], *region[0].iterancestors()}
    inside = set(region)
    kept = [b for b in blocks if _inside(b.owner, inside) and holders.issuperset(b.boilerplate)]
    segments = []
    for i, block in enumerate(kept):
        if block.image_url:
            segments.append(Segment(kind="image", image_url=block.image_url, text=block.text))
        elif _good(block, settings) and (not block.heading or _introduces(kept[i + 1 :], settings)):
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
    shortest = 1 if block.heading else settings.min_paragraph_chars
    return len(block.text) >= shortest and block.link_chars / len(block.text) <= settings.max_link_density


def _introduces(following: list[_Block], settings: ExtractSettings) -> bool:
    """Whether a heading is followed by content (not by a link list, as "Related posts" is)."""
    for block in following:
        if not block.image_url:
            return block.heading or _good(block, settings)
    return False


def _parse(html: str) -> etree._Element | None:
    if not html or "<" not in html:
        return None
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        root = lxml_html.document_fromstring(html.encode("utf-8", errors="replace"), parser=parser)
    except (etree.ParserError, ValueError):
        return None
    return root


def _base_url(root: etree._Element, url: str) -> str:
    for base in root.iter("base"):
        href = (base.get("href") or "").strip()
        if href:
            return urljoin(url, href)
    return url


def _classes(el: etree._Element) -> set[str]:
    """Words of the class and id names, up to a state modifier (``has-ads``, ``no-sidebar``) or a BEM
    modifier (``l-outer--nav`` gives ``l``, ``outer``)."""
    words = set()
    for name in f"{el.get('class', '')} {el.get('id', '')}".lower().split():
        for part in _TOKEN.findall(name.split("--")[0]):
            if part in _MODIFIERS:
                break
            words.add(part)
    return words


def _clean(root: etree._Element) -> set[etree._Element]:
    """Removes scripts, styles, forms controls and hidden elements; returns boilerplate-looking ones.

    Navigation, footers, asides, forms, page headers and elements whose class or
    id names boilerplate (cookie, share, comments, ads, ...) are not removed but
    returned: their blocks vote less for the main content and are kept only
    when the main content lies inside them (some sites wrap the article in an
    ``<aside>`` or a ``class="has-ads"`` section).
    """
    doomed, boilerplate = [], set()
    for el in root.iter():
        if not isinstance(el.tag, str):
            doomed.append(el)
            continue
        tag = el.tag.lower()
        if tag in _DROP_TAGS or _HIDDEN_STYLE.search(el.get("style", "")) or el.get("hidden") is not None:
            doomed.append(el)
        elif tag not in _PROTECTED and (
            tag in _BOILERPLATE_TAGS
            or (tag == "header" and not _in_article(el) and _link_density(el) > 0.3)
            or el.get("aria-hidden") == "true"
            or el.get("role") in ("navigation", "complementary", "contentinfo", "dialog", "alertdialog")
            or _classes(el) & _BOILERPLATE_WORDS
        ):
            boilerplate.add(el)
    for el in doomed:
        if el.getparent() is not None and _attached(el, root):
            el.drop_tree()
    return {el for el in boilerplate if _attached(el, root)}


def _attached(el: etree._Element, root: etree._Element) -> bool:
    while el is not None and el is not root:
        el = el.getparent()
    return el is root


def _in_article(el: etree._Element) -> bool:
    return any(a.tag in ("article", "main") for a in el.iterancestors())


def _blocks(
    root: etree._Element, base: str, boilerplate: set[etree._Element], settings: ExtractSettings
) -> list[_Block]:
    """Cuts the cleaned tree into text blocks and images, in DOM order."""
    blocks: list[_Block] = []
    parts: list[str] = []
    link_chars = [0]

    def flush(owner: etree._Element) -> None:
        text = _SPACE.sub(" ", _INVISIBLE.sub("", "".join(parts))).strip()
        if text:
            heading = owner.tag in _HEADINGS or any(a.tag in _HEADINGS for a in owner.iterancestors())
            marks = _marks(owner, boilerplate)
            blocks.append(_Block(owner, text, min(link_chars[0], len(text)), heading=heading, boilerplate=marks))
        parts.clear()
        link_chars[0] = 0

    def walk(el: etree._Element, owner: etree._Element, in_link: bool) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag == "img" or tag == "picture":
            flush(owner)
            image = _image(el, base) if settings.keep_images else None
            if image is not None:
                blocks.append(_Block(owner, image[1], image_url=image[0], boilerplate=_marks(el, boilerplate)))
            _add_tail(el, in_link)
            return
        block = tag in _BLOCK_TAGS
        if block:
            flush(owner)
            owner = el
        in_link = in_link or tag == "a"
        _add(el.text, in_link)
        for child in el:
            walk(child, owner, in_link)
        if block:
            flush(owner)
        _add_tail(el, in_link and tag != "a")

    def _add(text: str | None, in_link: bool) -> None:
        if text:
            parts.append(text)
            if in_link:
                link_chars[0] += len(_SPACE.sub("", text)) + 1

    def _add_tail(el: etree._Element, in_link: bool) -> None:
        _add(el.tail, in_link)

    walk(root, root, False)
    flush(root)
    return blocks


def _marks(el: etree._Element, boilerplate: set[etree._Element]) -> tuple[etree._Element, ...]:
    """The boilerplate-looking elements among ``el`` and its ancestors."""
    if not boilerplate:
        return ()
    return tuple(a for a in (el, *el.iterancestors()) if a in boilerplate)


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


def _main_region(blocks: list[_Block], settings: ExtractSettings) -> list[etree._Element]:
    """The elements holding the main content: the best container and its good siblings."""
    scores: dict[etree._Element, float] = {}
    for block in blocks:
        if block.image_url or len(block.text) < settings.min_scoring_chars:
            continue
        if block.link_chars / len(block.text) > 0.33:
            continue
        score = 1 + block.text.count(",") + min(len(block.text) // 100, 3)
        if block.boilerplate:
            score *= settings.boilerplate_vote
        containers = (a for a in block.owner.iterancestors() if a.tag in _CONTAINERS)
        for level, el in zip(range(3), containers):
            scores[el] = scores.get(el, 0.0) + score / (level + 1)
    if not scores:
        return []
    final = {el: score * (1 - _link_density(el)) for el, score in scores.items()}
    top = max(final, key=final.get)
    best = final[top]
    top = _widen(top, blocks, settings)
    region = [top]
    parent = top.getparent()
    if parent is not None:
        threshold = max(3.0, best * settings.sibling_ratio)
        region += [s for s in parent if s is not top and final.get(s, 0.0) >= threshold]
    return region


def _widen(top: etree._Element, blocks: list[_Block], settings: ExtractSettings) -> etree._Element:
    """Climbs from ``top`` to the highest ancestor that adds more content text than boilerplate text.

    Content text is the text of blocks with few links outside boilerplate-looking
    elements; boilerplate text is everything else (link lists, menus, asides).
    """
    content: dict[etree._Element, int] = {}
    noise: dict[etree._Element, int] = {}
    for block in blocks:
        if block.image_url:
            continue
        good = not block.boilerplate and block.link_chars / len(block.text) <= 0.33
        tally = content if good else noise
        for el in (block.owner, *block.owner.iterancestors()):
            tally[el] = tally.get(el, 0) + len(block.text)
    best = top
    for ancestor in top.iterancestors():
        if ancestor.tag == "html":
            break
        gained = content.get(ancestor, 0) - content.get(best, 0)
        cost = noise.get(ancestor, 0) - noise.get(best, 0)
        if gained > 0 and gained >= settings.climb_ratio * cost:
            best = ancestor
    return best


def _link_density(el: etree._Element) -> float:
    text = len(_SPACE.sub("", el.text_content()))
    if not text:
        return 1.0
    links = sum(len(_SPACE.sub("", a.text_content())) for a in el.iter("a"))
    return min(links / text, 1.0)


def _inside(el: etree._Element, targets: set[etree._Element]) -> bool:
    return el in targets or any(a in targets for a in el.iterancestors())
