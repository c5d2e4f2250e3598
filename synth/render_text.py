"""Plain text rendered into a page image with real TrueType fonts, one page per sample.

:func:`render_text` lays ``text`` out on one page in a layout drawn deterministically
from ``seed`` (a :class:`random.Random`, stable across Python versions): one or two
columns, a font from :attr:`TextRenderSettings.fonts` (resolved with matplotlib's
``font_manager``, which ships DejaVu Sans, Serif and Mono), a font size, margins
and line spacing from their ranges. Same text, seed and settings give the same
pixels.

The text is read as blocks separated by blank lines; single newlines inside a block
are soft wraps. A block's first line is drawn as a heading (bold, larger) when it
looks like one: a Markdown ``#`` line (the ``#`` marks are not drawn), or a short
line (at most 70 characters and 10 words) with no closing punctuation that is
numbered (``2.1 Methods``), in capitals, or mostly capitalised words. Paragraphs are
wrapped greedily at spaces to the column width (a word wider than the column is
broken between characters); whitespace runs are drawn as one space and invisible
control characters are dropped.

What does not fit on the page is cut at a line boundary, and ``target`` is exactly
the text on the page: its blocks (headings and paragraphs, a cut paragraph up to its
last drawn line) joined by a blank line, each paragraph's lines joined by single
spaces. ``layout["truncated"]`` says whether anything was cut. The renderer is
``text:one_column`` or ``text:two_column``.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from synth.rendering import RenderedPage, RenderError

_HEADING_MAX_CHARS = 70
_HEADING_MAX_WORDS = 10
_NUMBERED = re.compile(r"^(\d+(\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+\S")
_MARKDOWN = re.compile(r"^#{1,6}\s+(\S.*)$")


@dataclass(frozen=True)
class TextRenderSettings:
    """Page geometry and the ranges the seed draws a layout from."""

    dpi: int = 120
    page_size_in: tuple[float, float] = (8.5, 11.0)
    font_size_pt: tuple[float, float] = (9.0, 13.0)
    margin_in: tuple[float, float] = (0.5, 1.0)
    columns: tuple[int, ...] = (1, 2)
    fonts: tuple[str, ...] = ("DejaVu Serif", "DejaVu Sans")
    line_spacing: tuple[float, float] = (1.15, 1.5)
    heading_scale: tuple[float, float] = (1.2, 1.6)
    column_gap_in: float = 0.3


@dataclass
class _Block:
    text: str
    heading: bool


@lru_cache(maxsize=None)
def _font_file(family: str, bold: bool) -> str:
    from matplotlib import font_manager

    props = font_manager.FontProperties(family=family, weight="bold" if bold else "normal")
    try:
        return font_manager.findfont(props, fallback_to_default=False)
    except ValueError as err:
        raise RenderError("render_failed", f"font {family!r} not found") from err


@lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(path).get_charmap())


@lru_cache(maxsize=256)
def _font(path: str, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size_px)


def _visible(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf") or c in "\n\t")


def _looks_like_heading(line: str) -> bool:
    words = line.split()
    if not words or len(line) > _HEADING_MAX_CHARS or len(words) > _HEADING_MAX_WORDS:
        return False
    if line[-1] in ".,;:!?" or not (line[0].isupper() or line[0].isdigit()):
        return False
    if _NUMBERED.match(line) or (line.isupper() and any(c.isalpha() for c in line)):
        return True
    capitalised = sum(w[0].isupper() for w in words)
    return len(words) <= 3 and capitalised == len(words) or capitalised * 2 > len(words) and len(words) > 1


def split_blocks(text: str) -> list[_Block]:
    """Headings and paragraphs of ``text`` with their whitespace normalised."""
    blocks: list[_Block] = []
    for raw in re.split(r"\n\s*\n", _visible(text).replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line.strip() for line in raw.split("\n") if line.strip()]
        if not lines:
            continue
        first = lines[0]
        markdown = _MARKDOWN.match(first)
        if markdown or _looks_like_heading(" ".join(first.split())):
            heading = " ".join((markdown.group(1) if markdown else first).split())
            blocks.append(_Block(heading, True))
            lines = lines[1:]
        if lines:
            blocks.append(_Block(" ".join(" ".join(lines).split()), False))
    return blocks


@lru_cache(maxsize=65536)
def _advance(font: ImageFont.FreeTypeFont, word: str) -> float:
    return font.getlength(word)


@lru_cache(maxsize=65536)
def _word(font: ImageFont.FreeTypeFont, word: str) -> tuple[Image.Image | None, int, int, float]:
    """A word's glyphs as an "L" mask with its offset from the pen position, and its advance.

    Words are drawn from this cache (FreeType rasterising dominates the page's time, and
    words repeat); a line is its words and single spaces, no kerning across a space.
    """
    left, top, right, bottom = font.getbbox(word, anchor="ls")
    advance = _advance(font, word)
    if right <= left or bottom <= top:
        return None, 0, 0, advance
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), word, font=font, fill=255, anchor="ls")
    return mask, left, top, advance


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float):
    """Yields (start, end) of each line of ``text`` wrapped to ``width``: line i is text[start:end]."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    space = font.getlength(" ")
    i = 0
    while i < len(words):
        start = words[i][0]
        total = _advance(font, text[start : words[i][1]])
        j = i + 1
        while j < len(words):
            extra = space + _advance(font, text[words[j][0] : words[j][1]])
            if total + extra > width:
                break
            total += extra
            j += 1
        end = words[j - 1][1]
        if j == i + 1 and total > width:  # one word wider than the column: break it between characters
            end = start + 1
            while end < words[i][1] and font.getlength(text[start : end + 1]) <= width:
                end += 1
            if end < words[i][1]:
                words[i] = (end, words[i][1])
                yield start, end
                continue
        yield start, end
        i = j


def _draw_line(image: Image.Image, x: float, baseline: int, line: str, font: ImageFont.FreeTypeFont) -> None:
    space = font.getlength(" ")
    for word in line.split(" "):
        mask, left, top, advance = _word(font, word)
        if mask is not None:
            image.paste((0, 0, 0), (round(x) + left, baseline + top), mask)
        x += advance + space


def _pick_font(rng: random.Random, families: tuple[str, ...], chars: set[int]) -> str:
    covering = [
        f
        for f in families
        if chars <= _charmap(_font_file(f, False)) and chars <= _charmap(_font_file(f, True))
    ]
    if not covering:
        missing = sorted(chars - _charmap(_font_file(families[0], False)))[:5]
        raise RenderError("render_failed", "no font covers " + " ".join(f"U+{c:04X}" for c in missing))
    return rng.choice(covering)


def render_text(text: str, seed: int, settings: TextRenderSettings = TextRenderSettings()) -> RenderedPage:
    """``text`` on one page in a layout drawn from ``seed``; ``target`` is the text on the page."""
    blocks = split_blocks(text)
    if not blocks:
        raise RenderError("empty_source", "no visible text")
    rng = random.Random(seed)
    columns = rng.choice(settings.columns)
    chars = {ord(c) for b in blocks for c in b.text if c != " "}
    family = _pick_font(rng, settings.fonts, chars)
    size_pt = round(rng.uniform(*settings.font_size_pt) * 2) / 2
    heading_pt = round(size_pt * rng.uniform(*settings.heading_scale) * 2) / 2
    spacing = round(rng.uniform(*settings.line_spacing), 2)
    dpi = settings.dpi
    margins = [round(rng.uniform(*settings.margin_in) * dpi) for _ in range(4)]  # left, top, right, bottom
    width, height = round(settings.page_size_in[0] * dpi), round(settings.page_size_in[1] * dpi)
    gap = round(settings.column_gap_in * dpi) if columns > 1 else 0
    column_width = (width - margins[0] - margins[2] - gap * (columns - 1)) / columns
    if column_width < dpi or height - margins[1] - margins[3] < dpi:
        raise RenderError("render_failed", "margins leave no room for text")

    body = _font(_font_file(family, False), round(size_pt * dpi / 72))
    head = _font(_font_file(family, True), round(heading_pt * dpi / 72))
    body_line = round(body.size * spacing)
    head_line = round(head.size * spacing)
    block_gap = round(body.size * 0.6)
    bottom = height - margins[3]

    image = Image.new("RGB", (width, height), (255, 255, 255))
    ascent = {False: body.getmetrics()[0], True: head.getmetrics()[0]}
    column, y = 0, margins[1]
    placed: list[str] = []
    lines_drawn = headings = 0
    truncated = False

    def x_of(col: int) -> int:
        return round(margins[0] + col * (column_width + gap))

    for index, block in enumerate(blocks):
        font, line_height = (head, head_line) if block.heading else (body, body_line)
        if y > margins[1]:
            y += block_gap * (2 if block.heading else 1)
        wrapped = list(_wrap(block.text, font, column_width)) if block.heading else _wrap(block.text, font, column_width)
        need = line_height * (len(wrapped) if block.heading else 1)
        if block.heading and index + 1 < len(blocks):
            need += block_gap + body_line  # keep a heading with the first line of what follows
        if y + need > bottom:
            if column + 1 == columns:
                truncated = True
                break
            column, y = column + 1, margins[1]
        end_on_page = 0
        for start, end in wrapped:
            if y + line_height > bottom:  # the next column, or the page is full
                truncated = column + 1 == columns
                if truncated:
                    break
                column, y = column + 1, margins[1]
            _draw_line(image, x_of(column), y + ascent[font is head], block.text[start:end], font)
            y += line_height
            end_on_page = end
            lines_drawn += 1
        if end_on_page:
            placed.append(block.text[:end_on_page].rstrip())
            headings += block.heading
        if truncated:
            break
    if not placed:
        raise RenderError("render_failed", "nothing fits on the page")
    layout = {
        "columns": columns,
        "font": family,
        "font_size_pt": size_pt,
        "heading_size_pt": heading_pt,
        "line_spacing": spacing,
        "margins_px": tuple(margins),
        "column_gap_px": gap,
        "page_px": (width, height),
        "dpi": dpi,
        "lines": lines_drawn,
        "headings": headings,
        "truncated": truncated,
    }
    renderer = "text:two_column" if columns == 2 else "text:one_column" if columns == 1 else f"text:{columns}_column"
    return RenderedPage(image, "\n\n".join(placed), renderer, layout)
