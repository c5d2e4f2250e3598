"""The decode cost of a sequential JPEG whose first scan holds every component is read from that
scan's header: scan markers after it (an appended picture, as in an MPO) count for nothing,
as libjpeg decodes none of them, while a progressive JPEG's scans are all counted."""

import io

from PIL import Image

from curation.images import decode_cost, normalize_image


def jpeg(mode: str, progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (1200, 800), 90).save(buffer, "JPEG", quality=90, progressive=progressive)
    return buffer.getvalue()


def cost(data: bytes) -> tuple[int, float]:
    return decode_cost(Image.open(io.BytesIO(data)), data)


def test_scan_markers_after_a_one_scan_jpeg_cost_nothing():
    for mode in ("L", "RGB", "CMYK"):
        body = jpeg(mode)
        appended = body + jpeg(mode, progressive=True) * 20  # hundreds of SOS markers after the picture
        assert appended.count(b"\xff\xda") > 100
        assert cost(appended) == cost(body)
    assert normalize_image(jpeg("RGB") + jpeg("RGB", progressive=True)).format == "jpeg"


def test_a_progressive_jpeg_still_counts_every_scan():
    sequential, progressive = cost(jpeg("RGB")), cost(jpeg("RGB", progressive=True))
    assert progressive[0] > sequential[0]  # the coefficient buffer
    assert progressive[1] > sequential[1] + 1200 * 800 * 5 / 2.5e8  # Pillow writes ten scans
