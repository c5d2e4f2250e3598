"""Hostile ``.warc.gz`` inputs: each is rejected with its reason, read in linear time and
bounded memory, and the records after it are still read.

Each file is read in a child process that reports its items, seconds and peak RSS, so
that a blow-up in memory is measured (and a runaway read is cut off) outside pytest.
"""

import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parents[2]
CAP = 16 << 20  # the record cap the child reads with
MB = 1 << 20
SECONDS = 10  # a linear reader does each in well under a second; today's took minutes
GROWTH = 150 * MB  # peak RSS over a child that reads a small good file (today: GBs)

CHILD = r"""
import json, resource, sys, time
from curation.warc import WarcResponse, iter_warc
start = time.perf_counter()
items = []
with open(sys.argv[1], "rb") as f:
    for item in iter_warc(f, "hostile.warc.gz", max_record_bytes=int(sys.argv[2])):
        if isinstance(item, WarcResponse):
            items.append(["ok", item.url, len(item.body)])
        else:
            items.append(["fail", item.reason, item.offset])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"items": items, "seconds": seconds, "peak": peak}))
"""


def _read(path: Path, cap: int = CAP) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(cap)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _good(url: str) -> bytes:
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(b"<p>ok</p>"),
                                                  http_headers=http))
    return out.getvalue()


def _gzip(parts, total: int = 0, fill: bytes = b"\0") -> bytes:
    """A gzip member of ``parts`` (bytes), then ``total`` bytes of ``fill`` made 1 MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(p) for p in parts]
    block = fill * (MB // len(fill))
    for _ in range(total // MB):
        out.append(packer.compress(block))
    out.append(packer.flush())
    return b"".join(out)


def _warc_head(url: str, length: int | str, http: bytes = b"") -> bytes:
    return (
        f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Date: 2024-05-01T12:00:00Z\r\n"
        f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\nWARC-Target-URI: {url}\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {length}\r\n\r\n"
    ).encode() + http


def _http(content_type: str, length: int, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {length}\r\n\r\n".encode()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> int:
    path = tmp_path_factory.mktemp("warc") / "good.warc.gz"
    path.write_bytes(_good("http://a.example/1") + _good("http://a.example/2"))
    return _read(path)["peak"]


def _check(tmp_path: Path, baseline: int, bad: bytes, reasons: list[str], cap: int = CAP) -> dict:
    """Reads good, ``bad``, good; asserts the failures' reasons, the time and the memory."""
    first, last = _good("http://a.example/before"), _good("http://a.example/after")
    path = tmp_path / "hostile.warc.gz"
    path.write_bytes(first + bad + last)
    result = _read(path, cap)
    items = result["items"]
    assert items[0][:2] == ["ok", "http://a.example/before"]
    assert items[-1][:2] == ["ok", "http://a.example/after"]
    failures = items[1:-1]
    assert [f[0] for f in failures] == ["fail"] * len(failures)
    assert sorted({f[1] for f in failures}) == sorted(set(reasons))
    assert failures[0][2] == len(first)
    assert result["seconds"] < SECONDS, result["seconds"]
    assert result["peak"] - baseline < GROWTH, (result["peak"] - baseline) / MB
    return result


def test_long_line_of_zeros(tmp_path, baseline):
    """32 MB of zeros with no newline in one member (today: 15 s in warcio's readline)."""
    _check(tmp_path, baseline, _gzip([], 32 * MB), ["line_too_long"], cap=64 * MB)


def test_gigabyte_of_zeros_with_no_newline(tmp_path, baseline):
    """1 GB of zeros in a 1 MB member (today: still running at 300 s with 2.1 GB)."""
    _check(tmp_path, baseline, _gzip([], 1024 * MB), ["record_too_large"])


def test_repeated_gzip_magic(tmp_path, baseline):
    """1 MB of gzip magic bytes (today: 300 KB take 15.7 s, 3 MB killed at 300 s)."""
    result = _check(tmp_path, baseline, b"\x1f\x8b\x08" * (MB // 3), ["corrupt_member"])
    assert len(result["items"]) == 3  # the garbage is one failure


def test_gigabyte_page_record(tmp_path, baseline):
    """A member holding a 1 GB page (today: 3.15 GB peak before ``page_too_large``)."""
    size = 1024 * MB
    head = _warc_head("http://big.example/", size + 60, _http("text/html", size))
    _check(tmp_path, baseline, _gzip([head], size, b"<p>a</p>"), ["record_too_large"])


@pytest.mark.parametrize("content_type", ["text/html", "image/png"])
def test_content_encoding_gzip_bomb(tmp_path, baseline, content_type):
    """``Content-Encoding: gzip`` of 1 GB of zeros, in a 2.7 KB member (today: a 1 GB body, 2.1 GB)."""
    payload = _gzip([], 1024 * MB)
    http = _http(content_type, len(payload), "Content-Encoding: gzip\r\n")
    bad = _gzip([_warc_head("http://bomb.example/", len(http) + len(payload), http), payload])
    assert len(bad) < 10_000
    _check(tmp_path, baseline, bad, ["record_too_large"])


def test_nested_content_encodings(tmp_path, baseline):
    """``gzip, gzip`` is decoded under the cap; three codings are one too many."""
    page = b"<p>" + b"nested " * 1000 + b"</p>"
    twice = _gzip([_gzip([page])])
    http = _http("text/html", len(twice), "Content-Encoding: gzip, gzip\r\n")
    good = _gzip([_warc_head("http://nested.example/", len(http) + len(twice), http), twice])
    thrice = _gzip([twice])
    http = _http("text/html", len(thrice), "Content-Encoding: gzip, gzip, gzip\r\n")
    bad = _gzip([_warc_head("http://deep.example/", len(http) + len(thrice), http), thrice])
    path = tmp_path / "nested.warc.gz"
    path.write_bytes(good + bad + _good("http://a.example/after"))
    items = _read(path)["items"]
    assert items == [["ok", "http://nested.example/", len(page)], ["fail", "too_many_encodings", len(good)],
                     ["ok", "http://a.example/after", 9]]


@pytest.mark.parametrize("length", ["99999999999999999999", "-5", "12abc", "1e3", ""])
def test_malformed_content_length(tmp_path, baseline, length):
    """A ``Content-Length`` that is no length (today 99999999999999999999 raises ``OverflowError``
    out of ``iter_warc``: the file became one ``unreadable_file``)."""
    http = _http("text/html", 9) + b"<p>ok</p>"
    _check(tmp_path, baseline, _gzip([_warc_head("http://bad.example/", length, http)]), ["bad_length"])


def test_declared_length_over_the_cap(tmp_path, baseline):
    http = _http("text/html", 9) + b"<p>ok</p>"
    _check(tmp_path, baseline, _gzip([_warc_head("http://big.example/", CAP + 1, http)]), ["record_too_large"])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", ""])
@pytest.mark.parametrize("chunked", [True, False])
def test_encoded_payloads_read_as_warcio_reads_them(encoding, chunked):
    """Good data: chunked and content-encoded payloads decode to what warcio's content stream gives."""
    from warcio.archiveiterator import ArchiveIterator

    from curation.warc import iter_warc

    page = b"<p>" + b"encoded page " * 500 + b"</p>"
    body = {"gzip": _gzip([page]), "deflate": zlib.compress(page), "": page}[encoding]
    extra = f"Content-Encoding: {encoding}\r\n" if encoding else ""
    if chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 700]), body[i : i + 700]) for i in range(0, len(body), 700))
        body += b"0\r\n\r\n"
        extra += "Transfer-Encoding: chunked\r\n"
    http = _http("text/html", len(body), extra) + body
    data = _gzip([_warc_head("http://enc.example/", len(http), http)])
    [expected] = [r.content_stream().read() for r in ArchiveIterator(io.BytesIO(data))]
    [item] = list(iter_warc(io.BytesIO(data), "enc.warc.gz"))
    assert item.body == expected == page
