"""Document inputs for the demo and the tests: PDFs (with a text layer, encrypted, cut short),
scanned-looking page images, multi-page TIFFs, and JSONL rendering sources.

:func:`make_pdf` writes a minimal valid PDF by hand (Helvetica text objects and a correct xref
table), so no PDF library is needed to make one; :func:`write_document_inputs` lays out a
small corpus with the planted bad cases the pipeline must turn into dead letters.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

HARBOUR_REPORT = [
    "Quarterly report of the harbour authority, 2023.",
    "Cargo volume rose by 12 percent to 4.1 million tonnes.",
    "The new crane on pier 7 entered service in March.",
    "Passenger traffic stayed flat at 830,000 travellers.",
]
MUSEUM_NOTE = [
    "The city museum opened its new wing on 4 May.",
    "The wing shows 240 paintings from the northern school.",
    "Entry is free for visitors under eighteen years of age.",
    "Guided tours start every hour from the main hall.",
]
BUDGET_NOTE = [
    "The council set next year's budget at 18.4 million euros.",
    "Road repairs receive 2.1 million euros, schools 6.3 million.",
    "A new bus line will connect the station with the hospital.",
    "The budget was approved by 21 votes to 6.",
]
SCANNED_PAGE = [
    "Minutes of the library board meeting",
    "The board approved a budget of 52,000 euros",
    "for new reading rooms on the second floor.",
    "Opening hours will extend to nine in the evening.",
]


def make_pdf(pages, size=(612, 792), encrypt=False, font_size=12):
    """A minimal valid PDF: one Helvetica text object per line, a correct xref table.

    Args:
        pages: per page, a list of ``(x, y, text)`` lines (empty for a page without text).
        size: the MediaBox of every page, in points.
        encrypt: add a standard-security /Encrypt dictionary whose user password is not empty.
    """
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    for i, lines in enumerate(pages):
        page_id, content_id = 4 + 2 * i, 5 + 2 * i
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        ).encode()
        ops = []
        for x, y, text in lines:
            escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 {font_size} Tf {x} {y} Td ({escaped}) Tj ET")
        stream = "\n".join(ops).encode("latin-1")
        objects[content_id] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    trailer_extra = b""
    if encrypt:
        encrypt_id = max(objects) + 1
        objects[encrypt_id] = (
            b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -44 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> >>"
        )
        trailer_extra = b" /Encrypt %d 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]" % (
            encrypt_id
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for object_id in sorted(objects):
        offsets[object_id] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (object_id, objects[object_id])
    xref = len(out)
    count = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    out += b"".join(b"%010d 00000 n \n" % offsets[i] for i in range(1, count))
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (count, trailer_extra, xref)
    return bytes(out)


def text_lines(lines=HARBOUR_REPORT, top=720, step=16):
    """Lines placed down a page from ``top`` (points), as :func:`make_pdf` takes them."""
    return [(72, top - step * i, line) for i, line in enumerate(lines)]




def full_text_page(lines):
    """A page filled with text (each line repeated down the page), so its text layer is usable."""
    body = [lines[i % len(lines)] for i in range(36)]
    return text_lines(body, top=740, step=18)


def scan_image(lines, size=(1100, 700), font_size=30, image_format="PNG") -> bytes:
    """A page image of ``lines`` in DejaVu Sans, black on white: a scan with no text layer."""
    from matplotlib import font_manager

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), font_size)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((60, 60 + i * int(font_size * 1.8)), line, font=font, fill="black")
    buffer = io.BytesIO()
    page.save(buffer, format=image_format)
    return buffer.getvalue()


def tiff_pages(pages) -> bytes:
    """A multi-page TIFF, one scanned page per list of lines."""
    frames = [Image.open(io.BytesIO(scan_image(lines))) for lines in pages]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@dataclass(frozen=True)
class DocumentCase:
    """One input file and what the pipeline must make of it.

    Attributes:
        name: the file name.
        expect: ``pages`` (its pages become samples) or the reason it is a dead letter.
        pages: the page count the file holds.
        text: the text of its first page, as the pipeline must transcribe it.
    """

    name: str
    expect: str
    pages: int = 0
    text: str = ""


def write_document_inputs(directory: str) -> list[DocumentCase]:
    """Writes a small corpus of documents with planted bad cases into ``directory``."""
    files = [
        (DocumentCase("report.pdf", "pages", 2, " ".join(HARBOUR_REPORT)),
         make_pdf([full_text_page(HARBOUR_REPORT), full_text_page(BUDGET_NOTE)])),
        (DocumentCase("report-copy.pdf", "near_duplicate", 2),
         make_pdf([full_text_page(HARBOUR_REPORT), full_text_page(BUDGET_NOTE)])),
        (DocumentCase("scan.png", "pages", 1, " ".join(SCANNED_PAGE)), scan_image(SCANNED_PAGE)),
        (DocumentCase("scans.tiff", "pages", 2, " ".join(MUSEUM_NOTE)), tiff_pages([MUSEUM_NOTE, HARBOUR_REPORT[:2]])),
        (DocumentCase("locked.pdf", "encrypted"), make_pdf([full_text_page(HARBOUR_REPORT)], encrypt=True)),
        (DocumentCase("cut.pdf", "corrupt_pdf"), make_pdf([full_text_page(MUSEUM_NOTE)])[:700]),
        (DocumentCase("notes.pdf", "not_a_document"), b"these are plain notes, not a PDF\n" * 20),
    ]
    os.makedirs(directory, exist_ok=True)
    for case, data in files:
        with open(os.path.join(directory, case.name), "wb") as handle:
            handle.write(data)
    return [case for case, _ in files]


RENDER_SOURCES = {
    "render-text": [
        {"text": "Harbour report\n\n" + " ".join(HARBOUR_REPORT * 3)},
        {"text": "Museum news\n\n" + " ".join(MUSEUM_NOTE * 3)},
    ],
    "render-chart": [
        {"chart": {"type": "bar", "title": "Cargo by pier", "x_label": "pier", "y_label": "kilotonnes",
                   "series": [{"name": "2023", "x": ["pier 5", "pier 6", "pier 7"], "y": [410, 380, 520]}]}},
        {"chart": {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": "line",
                   "data": {"values": [{"month": "Jan", "visitors": 1200}, {"month": "Feb", "visitors": 1350},
                                       {"month": "Mar", "visitors": 1610}]},
                   "encoding": {"x": {"field": "month", "type": "ordinal"},
                                "y": {"field": "visitors", "type": "quantitative"}}}},
        {"chart": {"type": "bar", "series": "not a list"}},
    ],
    "render-latex": [
        {"latex": "E = m c^2 + \\frac{a}{b}", "latex_kind": "equation"},
        {"latex": "\\begin{tabular}{lr} pier & tonnes \\\\ 5 & 410 \\\\ 7 & 520 \\end{tabular}",
         "latex_kind": "table"},
        {"latex": "\\frac{1}{", "latex_kind": "equation"},
        {"latex": "\\input{/etc/passwd}", "latex_kind": "equation"},
    ],
}


def write_render_sources(directory: str, kind: str) -> str:
    """Writes :data:`RENDER_SOURCES` for ``kind`` (``render-text``, ...) as JSONL; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{kind}.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        for row in RENDER_SOURCES[kind]:
            handle.write(json.dumps(row) + "\n")
    return path
