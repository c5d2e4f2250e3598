"""Tests of sampledata.pairs: the loopback image server, the pair cases and their Parquet.

Everything connects to 127.0.0.1 only; the redirect to the forbidden host
127.0.0.2 is inspected, never followed.
"""

from __future__ import annotations

import http.client
import io
import math
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.records import CaptionPair
from sampledata.pairs import (
    BOMB_SIDE,
    ImageServer,
    SampleCase,
    corrupt_bytes,
    decompression_bomb_png,
    make_pairs_cases,
    make_url_list,
    render_image,
    write_pairs_parquet,
)
from filters.caption import CaptionFilter

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BAD_ROUTE_EXPECTS = {
    "http_404", "timeout", "corrupt_image", "truncated_image", "decompression_bomb",
    "too_large", "forbidden_address", "http_500",
}


@pytest.fixture(scope="module")
def server():
    with ImageServer(slow_seconds=0.5) as image_server:
        yield image_server
        assert image_server.forbidden_hits == 0


def get(url: str, timeout: float = 10.0) -> tuple[int, http.client.HTTPMessage, bytes]:
    """(status, headers, body) of a GET that follows same-server redirects."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def raw_get(server: ImageServer, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A GET that follows nothing; the caller reads and closes."""
    parts = urllib.parse.urlsplit(server.base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", path)
    return connection, connection.getresponse()


def decoded(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "ext, pillow_format, content_type",
    [("jpg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp")],
)
def test_image_route_serves_the_requested_size_and_format(server, ext, pillow_format, content_type):
    status, headers, body = get(f"{server.base_url}/img/5-123x77.{ext}")
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert int(headers["Content-Length"]) == len(body)
    image = decoded(body)
    assert (image.format, image.size, image.mode) == (pillow_format, (123, 77), "RGB")
    assert body == render_image(5, 123, 77, ext) == get(f"{server.base_url}/img/5-123x77.{ext}")[2]


def test_generated_pixels_depend_only_on_seed_and_size():
    first = np.asarray(decoded(render_image(3, 96, 64, "png")))
    assert np.array_equal(first, np.asarray(decoded(render_image(3, 96, 64, "png"))))
    assert not np.array_equal(first, np.asarray(decoded(render_image(4, 96, 64, "png"))))
    assert not np.array_equal(first, np.asarray(decoded(render_image(3, 97, 64, "png")))[:, :96])
    for lossy in ("jpg", "webp"):  # the same picture, lossily encoded
        pixels = np.asarray(decoded(render_image(3, 96, 64, lossy))).astype(int)
        assert np.abs(pixels - first).mean() < 10, lossy


def test_generated_images_are_visually_varied():
    images = [np.asarray(decoded(render_image(seed, 160, 120, "png"))).astype(float) for seed in range(6)]
    for image in images:
        assert image.std() > 15  # not a flat colour
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000
    means = np.array([image.mean(axis=(0, 1)) for image in images])
    assert means.std(axis=0).max() > 10  # different palettes across seeds


def test_extreme_and_tiny_sizes_render(server):
    for width, height in [(1, 1), (40, 40), (1000, 100), (3, 700)]:
        status, _, body = get(f"{server.base_url}/img/9-{width}x{height}.jpg")
        assert status == 200 and decoded(body).size == (width, height)


@pytest.mark.parametrize("path", ["/img/1-0x10.jpg", "/img/1-9000x10.jpg", "/img/1-10x10.gif", "/nothing/here"])
def test_unservable_image_requests_and_unknown_paths_are_404(server, path):
    assert get(server.base_url + path)[0] == 404


# --------------------------------------------------------------------------- bad routes


def test_missing_route_is_404(server):
    status, headers, _ = get(f"{server.base_url}/missing/a/b.jpg")
    assert status == 404 and headers["Connection"] != "close"


@pytest.mark.parametrize(
    "code, body", [(200, b"status 200"), (418, b"status 418"), (503, b"status 503"), (204, b"")]
)
def test_status_route_answers_that_status(server, code, body):
    connection, response = raw_get(server, f"/status/{code}/photo.jpg")
    assert (response.status, response.read()) == (code, body)
    connection.close()


def test_status_outside_200_to_599_is_refused(server):
    assert get(f"{server.base_url}/status/101/x")[0] == 400


def test_slow_route_outlasts_a_short_read_timeout_then_serves_an_image(server):
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        OPENER.open(f"{server.base_url}/slow/1.jpg", timeout=0.1).read()
    start = time.monotonic()
    status, _, body = get(f"{server.base_url}/slow/2.jpg")
    assert time.monotonic() - start >= 0.45
    assert status == 200 and decoded(body).size == (320, 240)


def test_corrupt_route_sends_unidentifiable_bytes_as_jpeg(server):
    status, headers, body = get(f"{server.base_url}/corrupt/3.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body == corrupt_bytes(3) != corrupt_bytes(4)
    for n in range(50):
        with pytest.raises(Image.UnidentifiedImageError):
            Image.open(io.BytesIO(corrupt_bytes(n)))


def test_truncated_route_sends_half_a_valid_jpeg(server):
    status, _, body = get(f"{server.base_url}/truncated/8.jpg")
    full = render_image(8, 320, 240, "jpg")
    assert status == 200 and body == full[: len(full) // 2]
    image = Image.open(io.BytesIO(body))
    assert (image.format, image.size) == ("JPEG", (320, 240))
    with pytest.raises(OSError, match="truncated"):
        image.load()


def test_bomb_is_a_small_honest_png_declaring_a_huge_size(server):
    status, headers, body = get(f"{server.base_url}/bomb/1.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert len(body) < 300_000
    assert body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR"
    assert struct.unpack(">II", body[16:24]) == (BOMB_SIDE, BOMB_SIDE) == (30_000, 30_000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(body))
    # The pixel data really is 30000 rows of 30000 1-bit pixels (decompressed 1 MB at a time).
    idat_length = struct.unpack(">I", body[33:37])[0]
    assert body[37:41] == b"IDAT"
    stream, total, inflater = body[41 : 41 + idat_length], 0, zlib.decompressobj()
    while stream:
        out = inflater.decompress(stream, 1 << 20)
        assert out.count(0) == len(out)
        total += len(out)
        stream = inflater.unconsumed_tail
    assert inflater.eof and total == BOMB_SIDE * (1 + BOMB_SIDE // 8)


def test_bomb_builder_makes_decodable_pngs_of_any_size():
    for width, height in [(8, 7), (33, 2500), (1001, 1001)]:
        image = decoded(decompression_bomb_png(width, height))
        assert (image.size, image.mode, image.getextrema()) == ((width, height), "1", (0, 0))


def test_huge_route_streams_past_any_cap_without_content_length(server):
    connection, response = raw_get(server, "/huge/1.jpg")
    assert response.status == 200 and response.getheader("Content-Type") == "image/jpeg"
    assert response.getheader("Content-Length") is None
    first = response.read(6_000_000)  # a fetcher with a 5 MB cap stops here and hangs up
    assert len(first) == 6_000_000 and first[:2] == b"\xff\xd8"
    connection.close()
    assert get(f"{server.base_url}/img/1-64x64.jpg")[0] == 200  # the server shrugs it off

    status, _, body = get(f"{server.base_url}/huge/2.jpg")
    assert status == 200 and len(body) == server.huge_bytes == 30_000_000


def test_redirect_forbidden_points_at_the_forbidden_host_which_is_never_contacted(server):
    connection, response = raw_get(server, "/redirect-forbidden/7")
    response.read()
    connection.close()
    location = urllib.parse.urlsplit(response.getheader("Location"))
    assert response.status == 302
    assert (location.scheme, location.hostname, location.path) == ("http", "127.0.0.2", "/img/7-64x64.jpg")
    assert location.port and location.port != urllib.parse.urlsplit(server.base_url).port
    assert server.forbidden_hits == 0


def test_redirect_goes_to_the_same_server_keeping_the_query(server):
    connection, response = raw_get(server, "/redirect/img/2-80x60.png?size=small")
    response.read()
    connection.close()
    assert response.status == 302
    assert response.getheader("Location") == f"{server.base_url}/img/2-80x60.png?size=small"
    before = server.hits("/img/2-80x60.png")
    status, _, body = get(f"{server.base_url}/redirect/img/2-80x60.png")
    assert status == 200 and decoded(body).size == (80, 60)
    assert server.hits("/img/2-80x60.png") == before + 1


# --------------------------------------------------------------------------- server behaviour


def test_keep_alive_serves_several_requests_on_one_connection(server):
    connection, response = raw_get(server, "/img/1-32x32.jpg")
    response.read()
    sock = connection.sock
    for path, status in [("/missing/x", 404), ("/status/500/x", 500), ("/img/2-32x32.png", 200)]:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == status and response.getheader("Content-Length") == str(len(response.read()))
        assert response.getheader("Connection") != "close"
    assert connection.sock is sock
    connection.close()


def test_concurrent_requests_are_all_served_and_counted():
    with ImageServer() as image_server:
        urls = [f"{image_server.base_url}/img/{i % 10}-100x80.jpg?try={i}" for i in range(400)]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(get, urls))
        assert all(status == 200 for status, _, _ in results)
        assert all(body == render_image(i % 10, 100, 80, "jpg") for i, (_, _, body) in enumerate(results))
        assert image_server.hits("/img/") == image_server.hits() == 400
        assert image_server.hits("/img/3-") == 40
        assert image_server.hits("/missing/") == 0


def test_stop_returns_promptly_with_a_slow_request_in_flight():
    image_server = ImageServer(slow_seconds=30)
    image_server.start()
    outcome = []
    url = f"{image_server.base_url}/slow/1.jpg"

    def fetch():
        try:
            outcome.append(OPENER.open(url, timeout=60).read())
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    client = threading.Thread(target=fetch)
    client.start()
    deadline = time.monotonic() + 10
    while image_server.hits("/slow/") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    image_server.stop()
    client.join(10)
    assert time.monotonic() - start < 5
    assert not client.is_alive() and isinstance(outcome[0], Exception)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(url).port), timeout=2)


def test_base_url_needs_a_started_server():
    image_server = ImageServer()
    with pytest.raises(RuntimeError):
        image_server.base_url
    with image_server:
        assert image_server.base_url.startswith("http://127.0.0.1:")


# --------------------------------------------------------------------------- cases and parquet


def test_cases_are_deterministic_per_seed():
    cases = make_pairs_cases("http://127.0.0.1:1", n_good=12, seed=3)
    assert cases == make_pairs_cases("http://127.0.0.1:1", n_good=12, seed=3)
    assert cases != make_pairs_cases("http://127.0.0.1:1", n_good=12, seed=4)


def test_cases_hold_every_kind_of_row():
    base = "http://127.0.0.1:1"
    cases = make_pairs_cases(base, n_good=20, seed=1)
    expects = [case.expect for case in cases]
    assert expects.count("ok") == 20 and expects.count("duplicate") == 2
    assert BAD_ROUTE_EXPECTS | {"small_image", "bad_aspect"} <= set(expects)
    assert {"caption_empty", "caption_too_short", "caption_filename"} <= set(expects)
    assert all(case.url.startswith(base + "/") for case in cases)
    assert any("/redirect/img/" in case.url for case in cases if case.expect == "ok")
    assert {case.url.rsplit(".", 1)[-1] for case in cases if case.expect == "ok"} >= {"jpg", "png", "webp"}
    assert len({case.text for case in cases if case.expect == "ok"}) >= 15  # varied captions
    rows = [(case.url, case.text) for case in cases]
    assert len(set(rows)) == len(rows) - 2
    for index, case in enumerate(cases):
        if case.expect == "duplicate":
            assert cases[rows.index((case.url, case.text))].expect == "ok"
            assert rows.index((case.url, case.text)) < index


def test_captions_of_good_rows_pass_the_caption_filter_and_bad_ones_do_not():
    caption_filter = CaptionFilter()
    for case in make_pairs_cases("http://127.0.0.1:1", n_good=40, seed=2):
        record = CaptionPair(id="x", source="test", url=case.url, text=case.text)
        kept, reason = caption_filter.keep(caption_filter.score(record))
        if case.expect.startswith("caption_"):
            assert (kept, reason) == (False, case.expect), case
        else:
            assert kept, (case, reason)


def test_each_case_url_is_served_as_labelled(server):
    for case in make_pairs_cases(server.base_url, n_good=8, seed=5):
        path = case.url[len(server.base_url) :]
        if case.expect == "timeout":
            with pytest.raises((TimeoutError, urllib.error.URLError)):
                OPENER.open(case.url, timeout=0.1).read()
        elif case.expect == "forbidden_address":
            connection, response = raw_get(server, path)
            assert response.status == 302 and "//127.0.0.2:" in response.getheader("Location")
            connection.close()
        elif case.expect == "too_large":
            connection, response = raw_get(server, path)
            assert response.getheader("Content-Length") is None and len(response.read(5_000_001)) == 5_000_001
            connection.close()
        elif case.expect in ("http_404", "http_500"):
            assert get(case.url)[0] == int(case.expect[5:])
        elif case.expect == "corrupt_image":
            with pytest.raises(Image.UnidentifiedImageError):
                decoded(get(case.url)[2])
        elif case.expect == "truncated_image":
            with pytest.raises(OSError, match="truncated"):
                decoded(get(case.url)[2])
        elif case.expect == "decompression_bomb":
            with pytest.raises(Image.DecompressionBombError):
                decoded(get(case.url)[2])
        else:
            status, _, body = get(case.url)
            width, height = decoded(body).size
            assert status == 200 and len(body) < 5_000_000
            sane = min(width, height) >= 64 and max(width, height) <= 3 * min(width, height)
            assert sane == (case.expect not in ("small_image", "bad_aspect")), case
    assert server.forbidden_hits == 0


@pytest.mark.parametrize("url_column, text_column", [("URL", "TEXT"), ("url", "caption")])
def test_parquet_round_trips_with_either_column_naming(tmp_path, url_column, text_column):
    cases = make_pairs_cases("http://127.0.0.1:1", n_good=10, seed=0)
    path = str(tmp_path / "pairs.parquet")
    write_pairs_parquet(cases, path, url_column=url_column, text_column=text_column, rows_per_group=5)
    parquet = pq.ParquetFile(path)
    assert parquet.num_row_groups == math.ceil(len(cases) / 5)
    table = parquet.read()
    assert table.column_names == [url_column, text_column, "WIDTH", "HEIGHT", "similarity"]
    rows = table.to_pylist()
    assert [(row[url_column], row[text_column]) for row in rows] == [(c.url, c.text) for c in cases]
    for row in rows:
        assert 0.2 <= row["similarity"] <= 0.4
        if "/img/" in row[url_column]:
            name = row[url_column].rsplit("-", 1)[1].split(".")[0]
            assert f"{row['WIDTH']}x{row['HEIGHT']}" == name
        else:
            assert row["WIDTH"] is None and row["HEIGHT"] is None


def test_parquet_of_no_rows_keeps_its_schema(tmp_path):
    path = str(tmp_path / "empty.parquet")
    write_pairs_parquet([], path)
    table = pq.read_table(path)
    assert table.num_rows == 0 and table.column_names == ["URL", "TEXT", "WIDTH", "HEIGHT", "similarity"]
    assert str(table.schema.field("URL").type) == "string"


def test_parquet_rows_of_hand_made_cases(tmp_path):
    cases = [SampleCase("http://127.0.0.1:1/img/7-512x384.jpg", "A photo of a dog", "ok")] * 3
    path = str(tmp_path / "bench.parquet")
    write_pairs_parquet(cases, path)
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == 3 and rows[0]["WIDTH"] == 512 and rows[0]["HEIGHT"] == 384
    assert rows[0]["similarity"] == rows[2]["similarity"]  # derived from the row's content


def test_url_list_is_distinct_deterministic_and_served(server):
    urls = make_url_list(server.base_url, 200)
    assert len(set(urls)) == 200 and urls == make_url_list(server.base_url, 200)
    assert not set(urls) & set(make_url_list(server.base_url, 200, seed=1))
    for url in urls[:3]:
        image = decoded(get(url)[2])
        assert (image.format, image.size) == ("JPEG", (512, 384))
    small = make_url_list(server.base_url, 2, size=(64, 48))
    assert decoded(get(small[1])[2]).size == (64, 48)
