"""Round trip: pages rendered by synth/ and read back by each OCR backend come back as their target."""

from __future__ import annotations

import re

import pytest
from text_distance import cer_words

from curation.models.ocr import OcrSpec, load_cached
from synth.render_latex import LatexRenderSettings, render_latex
from synth.render_text import TextRenderSettings, render_text

TEXT = (
    "Harbour traffic in the first quarter\n\n"
    "Cargo volume rose by 12 percent to 4.1 million tonnes, the highest first quarter since 2019. "
    "The new crane on pier 7 entered service in March and moved 38,000 containers in its first weeks. "
    "Passenger traffic stayed flat at 830,000 travellers, while ferry delays fell by a third."
)
TWO_COLUMNS = (
    "Council budget for next year\n\n"
    "The council set next year's budget at 18.4 million euros after a long debate on Tuesday evening. "
    "Road repairs receive 2.1 million euros and schools 6.3 million euros, as in the draft of June. "
    "A new bus line will connect the station with the hospital from the first of April onwards. "
    "The budget was approved by 21 votes to 6, with two members of the council abstaining."
)


@pytest.fixture(scope="module", params=["rapidocr", "paddleocr"])
def engine(request):
    return load_cached(OcrSpec(backend=request.param))


def _settings(columns: int) -> TextRenderSettings:
    """A 300 dpi page (the shipped PP-OCRv4 models keep the spaces between words at that size)."""
    return TextRenderSettings(dpi=300, columns=(columns,), font_size_pt=(11, 12), fonts=("DejaVu Sans",))


def test_rendered_text_reads_back_under_two_percent_cer(engine):
    page = render_text(TEXT, seed=3, settings=_settings(1))
    assert not page.layout.get("truncated")
    read = engine.recognize([page.image])[0]
    assert cer_words(page.target, read.text) < 0.02, read.text


def test_a_two_column_page_comes_back_in_column_order(engine):
    page = render_text(TWO_COLUMNS, seed=5, settings=_settings(2))
    assert page.renderer == "text:two_column"
    read = engine.recognize([page.image])[0]
    assert cer_words(page.target, read.text) < 0.02, read.text
    text = " ".join(read.text.split())
    assert text.index("18.4 million") < text.index("21 votes to 6"), "the left column is read first"


def test_a_rendered_tables_cells_read_back(engine):
    source = r"\begin{tabular}{lrr} pier & tonnes & cranes \\ north & 4100 & 7 \\ south & 3250 & 5 \end{tabular}"
    page = render_latex(source, "table", LatexRenderSettings(dpi=300))
    cells = [cell.strip() for cell in re.split(r"&|\\\\", source.split("}", 2)[2].rsplit(r"\end", 1)[0]) if cell.strip()]
    read = engine.recognize([page.image])[0]
    found = sorted(line.text.strip() for line in read.lines)
    # The cells' text, whatever the order: reading order splits a table's columns like text columns.
    assert cer_words(" ".join(sorted(cells)), " ".join(found)) < 0.02, (found, cells)
