"""Document pages: PDFs and page images (PNG, JPEG, TIFF) as rendered pages with their text layer.

:func:`open_pages` takes a file's bytes, tells its kind from its magic bytes (never its
name), counts its pages and caps them at ``max_pages``; :meth:`DocumentPages.iter_pages`
then yields one :class:`PageImage` per page (RGB pixels, the embedded text layer and its
boxes) or a :class:`PageFailure` for a page that cannot be rendered, so one bad page never
stops the others. A file that cannot be read at all raises :class:`DocumentRejected` with a
reason (a dead letter for the pipeline).

Each page is then routed (:func:`route_page`): under ``auto`` a PDF page keeps its text
layer when :func:`text_layer_usable` accepts the stats of :func:`text_layer_quality`
(enough characters, few replacement/control/private-use characters, enough of the page
covered by text) and goes to OCR otherwise. Where a page has both a text layer and an OCR
transcript, :func:`agreement` (1 - character error rate) measures how far they agree.

Threads: PDFium is not thread-safe, not even across different documents. Every PDFium call
here holds one process-wide lock, so concurrent Beam threads are safe, but a
:class:`DocumentPages` itself must not be shared between threads: iterate it in the thread
that opened it. Close it (``with open_pages(...) as pages:``, or iterate it to the end) so
PDFium's memory is released file by file.
"""

from __future__ import annotations

import io
import math
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from curation.failures import NamedFailure
from curation.images import _to_rgb

ROUTES = ("auto", "text_layer", "ocr")
REJECT_REASONS = (
    "encrypted",
    "corrupt_pdf",
    "corrupt_image",
    "not_a_document",
    "unsupported_image",
    "too_large",
    "empty_document",
)
PAGE_FAILURE_REASONS = ("render_failed", "page_too_large")
IMAGE_KINDS = ("png", "jpeg", "tiff")

_PDF_MAGIC = b"%PDF-"
_PDF_HEADER_WINDOW = 1024  # the header may follow some junk bytes (the spec allows 1024)
_EOF_WINDOW = 1024  # "%%EOF" must be within the last 1024 bytes of a complete file
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
_UNSUPPORTED_IMAGE_MAGIC = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"8BPS", "psd"),
    (b"\xff\x0a", "jpegxl"),
)
_PILLOW_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG", "MPO"), "tiff": ("TIFF",)}
_COVERAGE_GRID = 200  # text boxes are rasterised on a grid this fine to measure their union
_POINTS_PER_INCH = 72.0

# PDFium keeps global state: one call at a time per process.
_PDFIUM_LOCK = threading.RLock()


@dataclass(frozen=True)
class DocumentSettings:
    """How documents are read and their pages routed (config section ``documents``).

    Attributes:
        dpi: resolution PDF pages are rendered at.
        min_dpi: lowest resolution a page may be rendered at to fit ``max_pixels``; a page
            that would need less is ``page_too_large``.
        max_pages: pages kept per file; later pages are cut and counted.
        max_file_bytes: largest file read; larger is ``too_large``.
        max_pixels: most pixels of one page (width*height). A PDF page over it at ``dpi``
            is rendered at the resolution that fits; an image page over it (checked from
            its header, before decoding) is ``page_too_large``.
        route: ``auto`` (text layer when usable, else OCR), ``text_layer`` (never OCR) or
            ``ocr`` (always OCR).
        min_chars: fewest non-space characters of a usable text layer.
        max_bad_char_ratio: largest share of replacement (U+FFFD), control,
            private-use, unassigned or surrogate characters in a usable text layer.
        min_coverage: smallest share of the page area its text boxes cover.
        require_eof: a PDF without ``%%EOF`` in its last 1024 bytes is truncated
            (``corrupt_pdf``), even where PDFium could recover some pages.
        allow_restricted: keep PDFs that are encrypted but open without a password
            (owner-password restrictions); when False they are ``encrypted`` too.
    """

    dpi: int = 150
    min_dpi: int = 50
    max_pages: int = 200
    max_file_bytes: int = 256 * 1024 * 1024
    max_pixels: int = 40_000_000
    route: str = "auto"
    min_chars: int = 50
    max_bad_char_ratio: float = 0.05
    min_coverage: float = 0.05
    require_eof: bool = True
    allow_restricted: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_dpi <= self.dpi <= 1200:
            raise ValueError(f"documents dpi and min_dpi must satisfy 1 <= min_dpi <= dpi <= 1200, "
                             f"got dpi={self.dpi}, min_dpi={self.min_dpi}")
        for name in ("max_pages", "max_file_bytes", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"documents {name} must be positive, got {getattr(self, name)}")
        if self.route not in ROUTES:
            raise ValueError(f"documents route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.min_chars < 0:
            raise ValueError(f"documents min_chars must be >= 0, got {self.min_chars}")
        for name in ("max_bad_char_ratio", "min_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"documents {name} must be within 0..1, got {getattr(self, name)}")


class DocumentRejected(NamedFailure):
    """A file that yields no pages at all.

    Attributes:
        reason: one of :data:`REJECT_REASONS`: ``encrypted`` (needs a password, or restricted
            and ``allow_restricted`` is off), ``corrupt_pdf`` (truncated or malformed),
            ``corrupt_image`` (an image whose header cannot be read), ``not_a_document``
            (neither a PDF nor an image), ``unsupported_image`` (an image of another format
            than PNG, JPEG, TIFF), ``too_large`` (over ``max_file_bytes``) or
            ``empty_document`` (no bytes, or no pages; PDFium refuses a PDF whose page tree
            is empty, and reports it without a code of its own, so such a PDF is ``corrupt_pdf``).
        detail: what was wrong, for the dead-letter row.
    """

    reasons = frozenset(REJECT_REASONS)


@dataclass(frozen=True)
class PageImage:
    """One rendered page.

    Attributes:
        index: the page's position in its file, from 0.
        image: the page's pixels, RGB.
        text_layer: the PDF's embedded text of the page (lines joined by ``\\n``); "" for images.
        text_boxes: the text layer's line boxes, ``(left, bottom, right, top)`` in PDF points
            relative to the page's lower-left corner.
        width_pt: the page's width in points (1/72 inch); for an image, at its stated
            resolution (72 dpi when it states none).
        height_pt: the page's height in points.
        dpi: the resolution the page was rendered at (below ``dpi`` when capped by
            ``max_pixels``); an image's stated resolution, or None.
    """

    index: int
    image: Image.Image
    text_layer: str = ""
    text_boxes: tuple[tuple[float, float, float, float], ...] = ()
    width_pt: float = 0.0
    height_pt: float = 0.0
    dpi: float | None = None


@dataclass(frozen=True)
class PageFailure:
    """A page that could not be rendered: ``render_failed`` or ``page_too_large``."""

    index: int
    reason: str
    detail: str = ""


class DocumentPages:
    """The pages of one opened file; built by :func:`open_pages`.

    Attributes:
        name: the file's name, for details and logs.
        kind: ``pdf``, ``png``, ``jpeg`` or ``tiff``.
        total_pages: pages in the file.
        kept_pages: pages :meth:`iter_pages` yields (at most ``max_pages``).
        encrypted: True for a PDF that is encrypted but opened without a password.
    """

    def __init__(self, name: str, kind: str, handle: Any, total_pages: int, settings: DocumentSettings,
                 encrypted: bool = False):
        self.name = name
        self.kind = kind
        self.total_pages = total_pages
        self.kept_pages = min(total_pages, settings.max_pages)
        self.encrypted = encrypted
        self._handle = handle
        self._settings = settings

    @property
    def cut_pages(self) -> int:
        """Pages cut by ``max_pages``."""
        return self.total_pages - self.kept_pages

    def iter_pages(self) -> Iterator[PageImage | PageFailure]:
        """Yields each kept page in order, then closes the file."""
        try:
            for index in range(self.kept_pages):
                if self.kind == "pdf":
                    yield _render_pdf_page(self._handle, index, self._settings)
                else:
                    yield _image_page(self._handle, index, self._settings)
        finally:
            self.close()

    def close(self) -> None:
        """Releases the file (PDFium document or Pillow image); safe to call twice."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if self.kind == "pdf":
            with _PDFIUM_LOCK:
                handle.close()
        else:
            handle.close()

    def __enter__(self) -> DocumentPages:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def detect_kind(data: bytes) -> str:
    """``pdf``, ``png``, ``jpeg`` or ``tiff`` from the magic bytes.

    Raises:
        DocumentRejected: ``empty_document``, ``unsupported_image`` or ``not_a_document``.
    """
    if not data:
        raise DocumentRejected("empty_document", "no bytes")
    if _PDF_MAGIC in data[: _PDF_HEADER_WINDOW + len(_PDF_MAGIC)]:
        return "pdf"
    for magic, kind in _IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    for magic, kind in _UNSUPPORTED_IMAGE_MAGIC:
        if data.startswith(magic):
            raise DocumentRejected("unsupported_image", f"{kind} is not one of {', '.join(IMAGE_KINDS)}")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise DocumentRejected("unsupported_image", f"webp is not one of {', '.join(IMAGE_KINDS)}")
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        raise DocumentRejected("unsupported_image", f"{data[8:12].decode()} is not one of {', '.join(IMAGE_KINDS)}")
    raise DocumentRejected("not_a_document", f"starts with {data[:8]!r}")


def open_pages(data: bytes, name: str, settings: DocumentSettings = DocumentSettings()) -> DocumentPages:
    """Opens a PDF or a page image and counts its pages.

    Args:
        data: the file's bytes.
        name: the file's name or path, for details.
        settings: the document settings.

    Returns:
        The opened document; iterate :meth:`DocumentPages.iter_pages` or close it.

    Raises:
        DocumentRejected: see its reasons.
    """
    if len(data) > settings.max_file_bytes:
        raise DocumentRejected("too_large", f"{name}: {len(data)} bytes > {settings.max_file_bytes}")
    kind = detect_kind(data)
    if kind == "pdf":
        return _open_pdf(data, name, settings)
    return _open_image(data, name, kind, settings)


def _open_pdf(data: bytes, name: str, settings: DocumentSettings) -> DocumentPages:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    if settings.require_eof and b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise DocumentRejected("corrupt_pdf", f"{name}: truncated (no %%EOF at the end)")
    with _PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as error:
            # PDFium's last error is process-wide and not reset by every failure: check the bytes too.
            if error.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY) and b"/Encrypt" in data:
                raise DocumentRejected("encrypted", f"{name}: {error}") from error
            raise DocumentRejected("corrupt_pdf", f"{name}: {error}") from error
        try:
            encrypted = pdfium_c.FPDF_GetSecurityHandlerRevision(document) != -1
            total = len(document)
        except Exception as error:  # PDFium bindings raise arbitrary types on broken page trees.
            document.close()
            raise DocumentRejected("corrupt_pdf", f"{name}: {error}") from error
    if encrypted and not settings.allow_restricted:
        _close_pdf(document)
        raise DocumentRejected("encrypted", f"{name}: encrypted with restrictions")
    if total == 0:
        _close_pdf(document)
        raise DocumentRejected("empty_document", f"{name}: no pages")
    return DocumentPages(name, "pdf", document, total, settings, encrypted=encrypted)


def _close_pdf(document: Any) -> None:
    with _PDFIUM_LOCK:
        document.close()


def _render_pdf_page(document: Any, index: int, settings: DocumentSettings) -> PageImage | PageFailure:
    with _PDFIUM_LOCK:
        page = textpage = None
        try:
            page = document[index]
            width_pt, height_pt = page.get_size()
            if not (width_pt > 0 and height_pt > 0):
                return PageFailure(index, "render_failed", f"page size {width_pt}x{height_pt} pt")
            dpi = float(settings.dpi)
            area_in = (width_pt / _POINTS_PER_INCH) * (height_pt / _POINTS_PER_INCH)
            if area_in * dpi * dpi > settings.max_pixels:
                dpi = math.sqrt(settings.max_pixels / area_in)
                if dpi < settings.min_dpi:
                    return PageFailure(
                        index, "page_too_large", f"{width_pt:.0f}x{height_pt:.0f} pt needs {dpi:.1f} dpi < {settings.min_dpi}"
                    )
            bitmap = page.render(scale=dpi / _POINTS_PER_INCH)
            image = bitmap.to_pil().convert("RGB")
            bitmap.close()
            textpage = page.get_textpage()
            text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            left, bottom, _, _ = page.get_bbox()
            boxes = tuple(
                (r[0] - left, r[1] - bottom, r[2] - left, r[3] - bottom)
                for r in (textpage.get_rect(i) for i in range(textpage.count_rects()))
            )
        except Exception as error:  # PDFium raises PdfiumError and others on a bad page.
            return PageFailure(index, "render_failed", f"{type(error).__name__}: {error}")
        finally:
            if textpage is not None:
                textpage.close()
            if page is not None:
                page.close()
    return PageImage(index, image, text, boxes, float(width_pt), float(height_pt), dpi)


def _open_image(data: bytes, name: str, kind: str, settings: DocumentSettings) -> DocumentPages:
    try:
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS[kind])
        total = getattr(image, "n_frames", 1) if kind == "tiff" else 1
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own bomb guard fires in open(), before our per-page check could.
        raise DocumentRejected("too_large", f"{name}: {error}") from error
    except Exception as error:  # malformed headers raise arbitrary types.
        raise DocumentRejected("corrupt_image", f"{name}: {type(error).__name__}: {error}") from error
    if total < 1:
        image.close()
        raise DocumentRejected("empty_document", f"{name}: no frames")
    return DocumentPages(name, kind, image, total, settings)


def _image_page(image: Image.Image, index: int, settings: DocumentSettings) -> PageImage | PageFailure:
    try:
        if index:
            image.seek(index)
        width, height = image.size
        if width <= 0 or height <= 0:
            return PageFailure(index, "render_failed", f"{width}x{height} pixels")
        if width * height > settings.max_pixels:
            return PageFailure(index, "page_too_large", f"{width}x{height} pixels > {settings.max_pixels}")
        image.load()
        rgb = _to_rgb(ImageOps.exif_transpose(image) if index == 0 else image.copy())
    except Exception as error:  # a truncated or corrupt frame
        return PageFailure(index, "render_failed", f"{type(error).__name__}: {error}")
    stated = image.info.get("dpi")
    dpi = float(stated[0]) if stated and stated[0] and float(stated[0]) > 0 else None
    scale = _POINTS_PER_INCH / (dpi or _POINTS_PER_INCH)
    return PageImage(index, rgb, "", (), rgb.width * scale, rgb.height * scale, dpi)


# -- the text layer -----------------------------------------------------------------------------


def _is_bad_char(char: str) -> bool:
    if char == "\ufffd":
        return True
    category = unicodedata.category(char)
    if category == "Cc":
        return char not in "\n\t"
    return category in ("Co", "Cs", "Cn")


def text_layer_quality(text: str, page: Any) -> dict[str, float]:
    """Measures a page's text layer.

    Args:
        text: the text layer.
        page: anything with ``text_boxes``, ``width_pt`` and ``height_pt`` (a :class:`PageImage`).

    Returns:
        ``chars`` (non-space characters), ``bad_chars`` (U+FFFD, control other than tab and
        newline, private-use, surrogate or unassigned), ``bad_char_ratio`` (bad per non-space
        character, 0 without any) and ``coverage`` (the share of the page area inside the union
        of the text boxes, measured on a 200 x 200 grid).
    """
    visible = [c for c in text if not c.isspace()]
    bad = sum(1 for c in visible if _is_bad_char(c))
    return {
        "chars": float(len(visible)),
        "bad_chars": float(bad),
        "bad_char_ratio": bad / len(visible) if visible else 0.0,
        "coverage": _coverage(page.text_boxes, page.width_pt, page.height_pt),
    }


def _coverage(boxes: Any, width: float, height: float) -> float:
    if not boxes or width <= 0 or height <= 0:
        return 0.0
    grid = np.zeros((_COVERAGE_GRID, _COVERAGE_GRID), dtype=bool)
    for left, bottom, right, top in boxes:
        x0, x1 = sorted((left / width, right / width))
        y0, y1 = sorted((bottom / height, top / height))
        # cells whose centres fall inside the box
        c0, c1 = (int(math.ceil(v * _COVERAGE_GRID - 0.5)) for v in (x0, x1))
        r0, r1 = (int(math.ceil(v * _COVERAGE_GRID - 0.5)) for v in (y0, y1))
        grid[max(r0, 0) : max(min(r1, _COVERAGE_GRID), 0), max(c0, 0) : max(min(c1, _COVERAGE_GRID), 0)] = True
    return float(grid.mean())


def text_layer_usable(stats: dict[str, float], settings: DocumentSettings) -> tuple[bool, str | None]:
    """Whether a text layer can stand for the page: ``(True, None)``, or ``(False, reason)``
    with reason ``too_few_chars``, ``bad_chars`` or ``low_coverage`` (checked in that order)."""
    if stats["chars"] < max(settings.min_chars, 1):
        return False, "too_few_chars"
    if stats["bad_char_ratio"] > settings.max_bad_char_ratio:
        return False, "bad_chars"
    if stats["coverage"] < settings.min_coverage:
        return False, "low_coverage"
    return True, None


@dataclass(frozen=True)
class Route:
    """Where a page's transcript comes from.

    Attributes:
        route: ``text_layer`` or ``ocr``.
        reason: why: ``usable`` or the reason the text layer is not (``too_few_chars``,
            ``bad_chars``, ``low_coverage``) under ``auto``; ``forced`` under a fixed route.
        stats: :func:`text_layer_quality` of the page.
    """

    route: str
    reason: str
    stats: dict[str, float]


def route_page(page: PageImage, settings: DocumentSettings) -> Route:
    """Routes one page per ``settings.route`` (see :class:`Route`)."""
    stats = text_layer_quality(page.text_layer, page)
    if settings.route != "auto":
        return Route(settings.route, "forced", stats)
    usable, reason = text_layer_usable(stats, settings)
    return Route("text_layer", "usable", stats) if usable else Route("ocr", reason or "unusable", stats)


# -- agreement between two transcripts ----------------------------------------------------------

_SPACES = re.compile(r"\s+")


def normalize_whitespace(text: str) -> str:
    """``text`` with runs of whitespace as one space, stripped."""
    return _SPACES.sub(" ", text).strip()


def levenshtein(a: str, b: str) -> int:
    """The edit distance (insertions, deletions, substitutions) between two strings, in characters.

    A numpy row DP, O(len(a) * len(b)) but vectorised along ``b``: the insertions within a
    row are a running minimum, ``row[j] = j + min_{k<=j}(tmp[k] - k)``.
    """
    start = 0
    limit = min(len(a), len(b))
    while start < limit and a[start] == b[start]:
        start += 1
    end = 0
    while end < limit - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start : len(a) - end], b[start : len(b) - end]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    codes_b = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(b) + 1, dtype=np.int64)
    row = steps.copy()
    for i, char in enumerate(a, start=1):
        cost = (codes_b != ord(char)).astype(np.int64)
        tmp = np.empty_like(row)
        tmp[0] = i
        np.minimum(row[1:] + 1, row[:-1] + cost, out=tmp[1:])
        row = np.minimum.accumulate(tmp - steps) + steps
    return int(row[-1])


def agreement(a: str, b: str) -> float:
    """How far two transcripts of a page agree: 1 - character error rate, in [0, 1].

    Whitespace runs are collapsed to one space first; the error rate is the edit distance over
    the longer text's length (so it is symmetric). Two empty texts agree fully.
    """
    a, b = normalize_whitespace(a), normalize_whitespace(b)
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(a, b) / longest
