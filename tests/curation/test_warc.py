import io
import random

import pytest

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curation import warc
from curation.warc import WarcFailure, WarcResponse, decode_html, iter_warc

CP1252_PAGE = '<html><head><meta charset="windows-1252"></head><body><p>Café – naïve “quotes”</p></body></html>'
SJIS_PAGE = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=shift_jis"></head>'
    "<body><p>日本語のテキストです。</p></body></html>"
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _record(
    writer: WARCWriter, url: str, body: bytes, content_type: str, status: str = "200 OK", kind: str = "response"
):
    if kind == "request":
        http = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
    else:
        http = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    return writer.create_warc_record(url, kind, payload=io.BytesIO(body), http_headers=http)


def _member(url: str, body: bytes, content_type: str = "text/html", **kwargs) -> bytes:
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    writer.write_record(_record(writer, url, body, content_type, **kwargs))
    return out.getvalue()


def _corrupt(member: bytes) -> bytes:
    data = bytearray(member)
    middle = len(data) // 2
    for i in range(middle, middle + 8):
        data[i] ^= 0xFF
    return bytes(data)


def _read(data: bytes) -> list:
    return list(iter_warc(io.BytesIO(data), "test.warc.gz"))


def test_reads_responses_and_skips_requests_and_non_200():
    members = [
        _member("http://a.example/", b"<p>hello</p>", "text/html; charset=utf-8"),
        _member("http://a.example/", b"", kind="request"),
        _member("http://a.example/missing", b"nope", status="404 Not Found"),
        _member("http://a.example/x.png", PNG, "image/png"),
    ]
    data = b"".join(members)
    items = _read(data)
    assert [type(i) for i in items] == [WarcResponse, WarcResponse]
    html, image = items
    assert (html.url, html.content_type, html.charset) == ("http://a.example/", "text/html", "utf-8")
    assert html.body == b"<p>hello</p>"
    assert html.offset == 0 and html.record_id.startswith("<urn:uuid:") and html.date
    assert (image.content_type, image.charset, image.body) == ("image/png", None, PNG)
    assert image.offset == len(data) - len(members[-1])


def test_offsets_point_at_members():
    first = _member("http://a.example/1", b"one")
    second = _member("http://a.example/2", b"two")
    items = _read(first + second)
    assert [i.offset for i in items] == [0, len(first)]


def test_corrupt_middle_member_and_truncated_last_member():
    good = [_member(f"http://a.example/{i}", f"<p>page {i}</p>".encode()) for i in range(4)]
    bad = _corrupt(_member("http://a.example/bad", b"<p>" + b"lorem ipsum dolor " * 200 + b"</p>"))
    last = _member("http://a.example/last", b"<p>" + b"truncated page text " * 200 + b"</p>")
    data = good[0] + good[1] + bad + good[2] + good[3] + last[: len(last) // 2]
    items = _read(data)
    responses = [i for i in items if isinstance(i, WarcResponse)]
    failures = [i for i in items if isinstance(i, WarcFailure)]
    assert [r.url for r in responses] == [f"http://a.example/{i}" for i in range(4)]
    assert [(f.reason, f.offset) for f in failures] == [
        ("corrupt_member", len(good[0]) + len(good[1])),
        ("truncated_member", len(data) - len(last) // 2),
    ]
    assert all(f.source == "test.warc.gz" for f in failures)
    ok, bad = WarcResponse, WarcFailure
    assert [type(i) for i in items] == [ok, ok, bad, ok, ok, bad]


def test_garbage_between_members_is_one_failure():
    first = _member("http://a.example/1", b"one")
    second = _member("http://a.example/2", b"two")
    items = _read(first + b"garbage bytes here" + second)
    assert [type(i) for i in items] == [WarcResponse, WarcFailure, WarcResponse]


def test_plain_uncompressed_warc():
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=False)
    writer.write_record(_record(writer, "http://a.example/1", b"one", "text/html"))
    writer.write_record(_record(writer, "http://a.example/2", b"two", "text/plain"))
    items = list(iter_warc(io.BytesIO(out.getvalue()), "plain.warc"))
    assert [(i.url, i.body) for i in items] == [("http://a.example/1", b"one"), ("http://a.example/2", b"two")]
    assert items[0].offset == 0 and items[1].offset > 0


def test_non_utf8_pages_declared_only_in_meta():
    data = _member("http://a.example/fr", CP1252_PAGE.encode("cp1252")) + _member(
        "http://a.example/jp", SJIS_PAGE.encode("shift_jis")
    )
    fr, jp = _read(data)
    assert fr.charset is None and jp.charset is None
    assert "Café – naïve “quotes”" in decode_html(fr.body, fr.charset)
    assert "日本語のテキストです。" in decode_html(jp.body, jp.charset)


def test_decode_html_priorities_and_fallbacks():
    body = CP1252_PAGE.encode("cp1252")
    assert "Café" in decode_html(body, "windows-1252")
    assert "Café" in decode_html(body, "bogus-charset")  # unknown header label: falls back to <meta>
    assert decode_html("héllo".encode("utf-8"), "utf-8") == "héllo"
    assert decode_html(b"\xef\xbb\xbfhi", None) == "hi"
    undeclared = ("<p>" + "Ceci est une phrase en français, très jolie à lire. " * 20 + "</p>").encode("cp1252")
    assert "français" in decode_html(undeclared, None)
    assert decode_html(b"ok \xff\xfe\xfd", "utf-8") == "ok \ufffd\ufffd\ufffd"


def test_http_headers_are_parsed_for_non_http_target_uris():
    items = _read(_member("hard::example.page.html", b"<p>hi</p>", "text/html; charset=latin-1"))
    assert [(i.url, i.content_type, i.charset, i.body) for i in items] == [
        ("hard::example.page.html", "text/html", "latin-1", b"<p>hi</p>")
    ]


def test_truncated_payloads_are_flagged():
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    http = StatusAndHeaders("200 OK", [("Content-Type", "image/jpeg")], protocol="HTTP/1.1")
    cut = writer.create_warc_record("https://a.test/big.jpg", "response", payload=io.BytesIO(b"\xff\xd8\xff" * 10),
                                    http_headers=http, warc_headers_dict={"WARC-Truncated": "length"})
    writer.write_record(cut)
    data = out.getvalue() + _member("https://a.test/page", b"<html><p>hi</p></html>")
    first, second = _read(data)
    assert first.truncated and not second.truncated


class _ShortReads(io.RawIOBase):
    """A stream that returns at most ``most`` bytes per read, as pipes and sockets may."""

    def __init__(self, data: bytes, most: int) -> None:
        self._data, self._pos, self._most = data, 0, most

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._most if size < 0 else min(size, self._most)
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


def _mixed_file() -> tuple[bytes, list[bytes], list[bytes]]:
    """Small members and members of incompressible payloads larger than zlib's first step,
    one corrupt and the last truncated, crossing the 1 MiB read boundary."""
    rng = random.Random(7)
    big = [rng.randbytes(size) for size in (200_000, 400_000, 90_000, 700_000, 300_000)]
    members = []
    for i, payload in enumerate(big):
        members.append(_member(f"http://a.example/small{i}", f"<p>{i}</p>".encode()))
        members.append(_member(f"http://a.example/big{i}", payload, "application/octet-stream"))
    members[3] = _corrupt(members[3])  # big1
    tail = _member("http://a.example/last", rng.randbytes(150_000), "application/octet-stream")
    return b"".join(members) + tail[: len(tail) // 2], members, big


def test_members_larger_than_a_step_and_across_refills():
    data, members, payloads = _mixed_file()
    assert len(data) > warc._CHUNK and max(map(len, members)) > 4 * warc._STEP
    items = _read(data)
    starts = [sum(map(len, members[:i])) for i in range(len(members))]
    expected = [(WarcResponse, starts[i]) for i in range(len(members)) if i != 3]
    expected.insert(3, (WarcFailure, starts[3]))
    expected.append((WarcFailure, len(b"".join(members))))
    assert [(type(i), i.offset) for i in items] == expected
    assert [f.reason for f in items if isinstance(f, WarcFailure)] == ["corrupt_member", "truncated_member"]
    responses = [i for i in items if isinstance(i, WarcResponse)]
    assert [r.body for r in responses if "big" in r.url] == [p for i, p in enumerate(payloads) if i != 1]


@pytest.mark.parametrize(("chunk", "step", "most"), [(7, 5, 1 << 20), (4096, 1, 3), (1 << 16, 1 << 10, 999)])
def test_tiny_reads_and_steps_give_the_same_items(monkeypatch, chunk, step, most):
    data, _, _ = _mixed_file()
    data += b"garbage between members" + _member("http://a.example/after", b"<p>after</p>")
    expected = _read(data)
    monkeypatch.setattr(warc, "_CHUNK", chunk)
    monkeypatch.setattr(warc, "_STEP", step)
    assert list(iter_warc(_ShortReads(data, most), "test.warc.gz")) == expected
