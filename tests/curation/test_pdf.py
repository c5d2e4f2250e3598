import io
import random
import time

import pytest
from PIL import Image

from curation.config import ConfigError, from_mapping
from sampledata.documents import make_pdf, text_lines
from text_distance import edit_distance
from curation.pdf import (
    DocumentRejected,
    DocumentSettings,
    PageFailure,
    PageImage,
    agreement,
    detect_kind,
    levenshtein,
    open_pages,
    route_page,
    text_layer_quality,
    text_layer_usable,
)


BODY = [
    "Quarterly report of the harbour authority, 2023.",
    "Cargo volume rose by 12 percent to 4.1 million tonnes.",
    "The new crane on pier 7 entered service in March.",
    "Passenger traffic stayed flat at 830,000 travellers.",
]


def full_page():
    """A page of text filling most of it: 40 lines of ~90 characters."""
    line = "The harbour authority reports cargo, passengers and works on every pier of the port in detail."
    return text_lines([line] * 40, top=740, step=17)


def tiff_bytes(colors, size=(40, 30)):
    frames = [Image.new("RGB", size, color) for color in colors]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def image_bytes(fmt, size=(40, 30), mode="RGB", color=(200, 10, 10)):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def pages_of(data, settings=DocumentSettings(), name="doc"):
    with open_pages(data, name, settings) as document:
        return document, list(document.iter_pages())


# Settings


def test_settings_defaults_and_config_loading():
    settings = from_mapping(DocumentSettings, {"dpi": 200, "route": "ocr", "max_pages": 3})
    assert (settings.dpi, settings.route, settings.max_pages) == (200, "ocr", 3)
    assert DocumentSettings().dpi == 150 and DocumentSettings().max_pages == 200


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"route": "vision"}, "route must be one of"),
        ({"dpi": 0}, "dpi"),
        ({"dpi": 100, "min_dpi": 150}, "min_dpi <= dpi"),
        ({"max_pages": 0}, "max_pages must be positive"),
        ({"max_pixels": -1}, "max_pixels must be positive"),
        ({"min_coverage": 1.5}, "min_coverage must be within 0..1"),
        ({"max_bad_char_ratio": -0.1}, "max_bad_char_ratio"),
        ({"min_chars": -1}, "min_chars"),
    ],
)
def test_settings_refuse_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DocumentSettings(**kwargs)


def test_bad_settings_in_config_are_config_errors():
    with pytest.raises(ConfigError):
        from_mapping(DocumentSettings, {"route": "nope"})


# Kinds and rejections


def test_kind_comes_from_magic_bytes_not_the_name():
    assert detect_kind(make_pdf([[]])) == "pdf"
    assert detect_kind(b"junk before the header %PDF-1.7 ...") == "pdf"
    assert detect_kind(image_bytes("PNG")) == "png"
    assert detect_kind(image_bytes("JPEG")) == "jpeg"
    assert detect_kind(tiff_bytes(["white"])) == "tiff"
    document, pages = pages_of(image_bytes("PNG"), name="scan.pdf")
    assert document.kind == "png" and len(pages) == 1


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty_document"),
        (b"<html><body>not a pdf</body></html>", "not_a_document"),
        (b"PK\x03\x04 a zip file", "not_a_document"),
        (image_bytes("GIF", mode="P", color=1), "unsupported_image"),
        (image_bytes("BMP"), "unsupported_image"),
        (image_bytes("WEBP"), "unsupported_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt_image"),
    ],
)
def test_files_that_are_no_document_are_rejected_with_a_reason(data, reason):
    with pytest.raises(DocumentRejected) as caught:
        open_pages(data, "file.pdf", DocumentSettings())
    assert caught.value.reason == reason
    assert caught.value.detail or reason == "empty_document"


def test_encrypted_pdf_is_rejected():
    with pytest.raises(DocumentRejected) as caught:
        open_pages(make_pdf([text_lines()], encrypt=True), "locked.pdf")
    assert caught.value.reason == "encrypted"
    assert "locked.pdf" in caught.value.detail


@pytest.mark.parametrize("keep", [0.95, 0.5, 0.1])
def test_truncated_pdf_is_corrupt(keep):
    data = make_pdf([text_lines(), text_lines()])
    with pytest.raises(DocumentRejected) as caught:
        open_pages(data[: int(len(data) * keep)], "cut.pdf")
    assert caught.value.reason == "corrupt_pdf"


def test_malformed_pdf_is_corrupt_even_when_complete():
    data = b"%PDF-1.4\n1 0 obj\n<< /Type /Garbage >>\nendobj\ntrailer\n<< >>\n%%EOF\n"
    with pytest.raises(DocumentRejected) as caught:
        open_pages(data, "bad.pdf")
    assert caught.value.reason == "corrupt_pdf"


def test_file_over_max_bytes_is_too_large():
    data = make_pdf([text_lines()])
    with pytest.raises(DocumentRejected) as caught:
        open_pages(data, "big.pdf", DocumentSettings(max_file_bytes=len(data) - 1))
    assert caught.value.reason == "too_large"
    assert open_pages(data, "big.pdf", DocumentSettings(max_file_bytes=len(data))).kept_pages == 1


def test_pdf_without_pages_is_rejected():
    # PDFium refuses an empty page tree (and leaves its last error code as it was), so corrupt_pdf
    for first in (make_pdf([text_lines()], encrypt=True), b"%PDF-1.4 junk %%EOF"):
        with pytest.raises(DocumentRejected):
            open_pages(first, "before.pdf")
        with pytest.raises(DocumentRejected) as caught:
            open_pages(make_pdf([]), "empty.pdf")
        assert caught.value.reason == "corrupt_pdf"


# PDF pages


def test_pdf_fans_out_into_rendered_pages_with_their_text_layer():
    data = make_pdf([text_lines(BODY[:2]), text_lines(BODY[2:]), []])
    document, pages = pages_of(data, DocumentSettings(dpi=72))
    assert (document.kind, document.total_pages, document.kept_pages, document.cut_pages) == ("pdf", 3, 3, 0)
    assert [p.index for p in pages] == [0, 1, 2]
    assert all(isinstance(p, PageImage) for p in pages)
    first = pages[0]
    assert first.image.mode == "RGB" and first.image.size == (612, 792)
    assert (first.width_pt, first.height_pt, first.dpi) == (612.0, 792.0, 72.0)
    assert first.text_layer == "\n".join(BODY[:2])
    assert pages[1].text_layer == "\n".join(BODY[2:])
    assert pages[2].text_layer == "" and pages[2].text_boxes == ()
    assert len(first.text_boxes) == 2
    left, bottom, right, top = first.text_boxes[0]
    assert 70 < left < 75 and 715 < top < 732 and right > left + 100


def test_dpi_sets_the_rendered_size():
    _, pages = pages_of(make_pdf([text_lines()], size=(144, 72)), DocumentSettings(dpi=300))
    assert pages[0].image.size == (600, 300)


def test_rendered_text_is_dark_ink_on_white():
    _, pages = pages_of(make_pdf([text_lines()]))
    gray = pages[0].image.convert("L")
    assert gray.getpixel((2, 2)) == 255
    assert gray.getextrema()[0] < 100


def test_pdf_over_max_pages_is_capped_and_the_cut_counted():
    data = make_pdf([text_lines([f"Page number {i} of the long report."]) for i in range(7)])
    document, pages = pages_of(data, DocumentSettings(max_pages=3, dpi=36, min_dpi=36))
    assert (document.total_pages, document.kept_pages, document.cut_pages) == (7, 3, 4)
    assert [p.text_layer for p in pages] == [f"Page number {i} of the long report." for i in range(3)]


def test_huge_page_is_rendered_at_a_lower_dpi_within_max_pixels():
    settings = DocumentSettings(dpi=150, min_dpi=20, max_pixels=1_000_000)
    _, pages = pages_of(make_pdf([text_lines()], size=(1440, 1440)), settings)  # 20 x 20 in
    page = pages[0]
    assert isinstance(page, PageImage)
    assert page.image.width * page.image.height <= 1_000_000
    assert page.dpi == pytest.approx(50.0)


def test_page_too_large_even_at_min_dpi_fails_alone():
    data = make_pdf([text_lines()], size=(14400, 14400))  # 200 x 200 in
    _, pages = pages_of(data, DocumentSettings(max_pixels=1_000_000, min_dpi=50))
    assert isinstance(pages[0], PageFailure) and pages[0].reason == "page_too_large"


def test_a_page_that_fails_to_render_does_not_stop_the_others():
    data = make_pdf([text_lines(), text_lines(), text_lines()])
    # page 2 is no page dictionary (its /Type is misspelt): PDFium cannot load it
    broken = data.replace(b"6 0 obj\n<< /Type /Page /", b"6 0 obj\n<< /Type /Pag  /")
    assert broken != data and len(broken) == len(data)
    _, pages = pages_of(broken)
    assert [type(p).__name__ for p in pages] == ["PageImage", "PageFailure", "PageImage"]
    assert pages[1].index == 1 and pages[1].reason == "render_failed" and pages[1].detail


def test_documents_are_closed_after_iterating():
    document = open_pages(make_pdf([text_lines()]), "a.pdf")
    assert len(list(document.iter_pages())) == 1
    assert document._handle is None
    document.close()  # twice is fine


def test_many_files_do_not_leak():
    data = make_pdf([text_lines()])
    for _ in range(200):
        with open_pages(data, "a.pdf", DocumentSettings(dpi=36, min_dpi=36)) as document:
            next(document.iter_pages())
        assert document._handle is None


# Image pages


def test_multi_page_tiff_gives_a_page_per_frame():
    document, pages = pages_of(tiff_bytes(["red", "green", "blue"]))
    assert (document.kind, document.total_pages) == ("tiff", 3)
    assert [p.image.getpixel((0, 0)) for p in pages] == [(255, 0, 0), (0, 128, 0), (0, 0, 255)]
    assert all(p.text_layer == "" and p.image.mode == "RGB" for p in pages)


def test_tiff_over_max_pages_is_capped():
    document, pages = pages_of(tiff_bytes(["red", "green", "blue", "white"]), DocumentSettings(max_pages=2))
    assert (document.total_pages, document.kept_pages, document.cut_pages, len(pages)) == (4, 2, 2, 2)


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGBA"), ("PNG", "L"), ("JPEG", "RGB"), ("TIFF", "1")])
def test_single_images_are_one_rgb_page(fmt, mode):
    color = 255 if mode in ("L", "1") else ((10, 20, 30, 255) if mode == "RGBA" else (10, 20, 30))
    document, pages = pages_of(image_bytes(fmt, size=(50, 20), mode=mode, color=color))
    assert document.total_pages == 1
    assert pages[0].image.mode == "RGB" and pages[0].image.size == (50, 20)


def test_image_over_max_pixels_is_not_decoded():
    _, pages = pages_of(image_bytes("PNG", size=(200, 100)), DocumentSettings(max_pixels=10_000))
    assert isinstance(pages[0], PageFailure) and pages[0].reason == "page_too_large"


def test_truncated_image_frame_is_a_page_failure():
    data = image_bytes("PNG", size=(300, 300), color=(1, 2, 3))
    noisy = Image.frombytes("RGB", (300, 300), random.Random(0).randbytes(300 * 300 * 3))
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    data = buffer.getvalue()
    _, pages = pages_of(data[: len(data) // 2])
    assert isinstance(pages[0], PageFailure) and pages[0].reason == "render_failed"


# Text layer quality and routing


def test_full_text_page_keeps_its_text_layer():
    _, pages = pages_of(make_pdf([full_page()]), DocumentSettings(dpi=36, min_dpi=36))
    route = route_page(pages[0], DocumentSettings())
    assert route.route == "text_layer" and route.reason == "usable"
    assert route.stats["chars"] > 3000 and route.stats["bad_char_ratio"] == 0.0
    assert 0.3 < route.stats["coverage"] < 0.7


def test_pages_with_little_text_go_to_ocr():
    data = make_pdf([[(72, 40, "Page 3")], []])
    _, pages = pages_of(data, DocumentSettings(dpi=36, min_dpi=36))
    assert [route_page(p, DocumentSettings()).reason for p in pages] == ["too_few_chars", "too_few_chars"]
    assert {route_page(p, DocumentSettings()).route for p in pages} == {"ocr"}


def test_text_in_a_corner_of_the_page_is_low_coverage():
    _, pages = pages_of(make_pdf([text_lines()]), DocumentSettings(dpi=36, min_dpi=36))
    stats = text_layer_quality(pages[0].text_layer, pages[0])
    assert stats["chars"] > 150 and stats["coverage"] < 0.05
    assert text_layer_usable(stats, DocumentSettings()) == (False, "low_coverage")
    assert text_layer_usable(stats, DocumentSettings(min_coverage=0.01)) == (True, None)


def test_garbled_text_layer_is_bad_chars():
    page = PageImage(0, Image.new("RGB", (10, 10)), "", ((0, 0, 612, 792),), 612.0, 792.0)
    garbled = "Cargo \ufffd\ufffd\ufffd \x03\x04 volume \ue000\ue001 rose " * 5
    stats = text_layer_quality(garbled, page)
    assert stats["coverage"] == 1.0 and stats["bad_chars"] == 35
    assert text_layer_usable(stats, DocumentSettings()) == (False, "bad_chars")
    clean = text_layer_quality("Cargo volume rose by twelve percent.\n\tAgain. " * 3, page)
    assert clean["bad_chars"] == 0 and text_layer_usable(clean, DocumentSettings()) == (True, None)


def test_coverage_is_the_union_of_boxes():
    page = PageImage(0, Image.new("RGB", (1, 1)), "", ((0, 0, 100, 50), (0, 0, 100, 50), (50, 0, 100, 100)), 100.0, 100.0)
    assert text_layer_quality("", page)["coverage"] == pytest.approx(0.75)


def test_fixed_routes_override_the_text_layer():
    _, pages = pages_of(make_pdf([full_page(), []]), DocumentSettings(dpi=36, min_dpi=36))
    assert [route_page(p, DocumentSettings(route="ocr")).route for p in pages] == ["ocr", "ocr"]
    assert [route_page(p, DocumentSettings(route="text_layer")).route for p in pages] == ["text_layer"] * 2
    assert route_page(pages[0], DocumentSettings(route="ocr")).reason == "forced"


# Agreement


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("", "", 1.0),
        ("abc", "", 0.0),
        ("kitten", "sitting", 1 - 3 / 7),
        ("the cargo rose", "the  cargo\nrose ", 1.0),
        ("Cargo rose 12%", "Carg0 rose 12%", 1 - 1 / 14),
        ("abcdefghij", "abcdefghij", 1.0),
        ("abcdefghij", "jihgfedcba", 0.0),
    ],
)
def test_agreement_on_known_strings(a, b, expected):
    assert agreement(a, b) == pytest.approx(expected)
    assert agreement(b, a) == pytest.approx(expected)


def test_levenshtein_matches_a_plain_dp():
    rng = random.Random(7)
    for _ in range(200):
        a = "".join(rng.choice("abcé漢 ") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("abcé漢 ") for _ in range(rng.randint(0, 30)))
        assert levenshtein(a, b) == edit_distance(a, b), (a, b)


def test_agreement_is_fast_on_page_sized_texts():
    rng = random.Random(1)
    a = "".join(rng.choice("abcdefghij klmnop") for _ in range(3000))
    b = "".join(c if rng.random() > 0.05 else "x" for c in a)
    start = time.perf_counter()
    value = agreement(a, b)
    assert time.perf_counter() - start < 2.0
    assert 0.9 < value < 0.99


def test_documents_in_concurrent_threads_render_the_same():
    from concurrent.futures import ThreadPoolExecutor

    data = make_pdf([full_page(), text_lines()])

    def texts(_):
        with open_pages(data, "t.pdf", DocumentSettings(dpi=36, min_dpi=36)) as document:
            return [(p.text_layer, p.image.size) for p in document.iter_pages()]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(texts, range(16)))
    assert all(result == results[0] for result in results)
