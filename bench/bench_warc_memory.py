"""Peak memory of `curation.warc.iter_warc` reading gzipped WARC files of growing size:
bounded by the largest record, not by the file.

    python bench/bench_warc_memory.py [--size-mb 100 300 1000] [--big-record-mb 50]

Each file is written to a temporary directory (deleted afterwards) as Common
Crawl ships them: one gzip member per record, a ``warcinfo`` record, then per
capture a ``request``, a ``response`` and a ``metadata`` record. Responses are
HTML pages of 50 to 200 KB (words of a 20,000-word vocabulary in paragraphs,
links and scripts), one in ten a JPEG-like image of 20 to 300 KB and one in
twenty a 404. One more file holds a few pages and a single
``--big-record-mb`` page. Each file is read in a fresh child process that walks
every record (as the pipeline does) and reports its peak RSS (``ru_maxrss``);
the first row is a child that reads nothing, the interpreter and imports alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_LEVEL = 1  # fast to write; the reader's memory and speed hardly depend on it
_DATE = "2024-05-01T12:00:00Z"
_RESPONSE = "Content-Type: application/http; msgtype=response\r\n"
_REQUEST = "Content-Type: application/http; msgtype=request\r\n"
_FIELDS = "Content-Type: application/warc-fields\r\n"


def _member(record_type: str, url: str, block: bytes, extra: str = "") -> bytes:
    """One WARC record compressed as its own gzip member."""
    headers = (
        f"WARC/1.0\r\nWARC-Type: {record_type}\r\nWARC-Date: {_DATE}\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\nWARC-Target-URI: {url}\r\n{extra}"
        f"Content-Length: {len(block)}\r\n\r\n"
    ).encode()
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)
    return packer.compress(headers) + packer.compress(block) + packer.compress(b"\r\n\r\n") + packer.flush()


def _http(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _html(rng: np.random.Generator, vocab: np.ndarray, size: int) -> bytes:
    """An HTML page of about ``size`` bytes."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>page</title>",
             "<script>var config = {analytics: true, id: 12345};</script></head><body>"]
    length = sum(map(len, parts))
    while length < size:
        words = " ".join(vocab[np.minimum(rng.zipf(1.3, size=int(rng.integers(40, 200))), vocab.size) - 1])
        link = f"<a href='/{rng.choice(vocab)}/{rng.integers(1 << 20)}'>{rng.choice(vocab)}</a>"
        parts.append(f"<div class='c{rng.integers(50)}'><p>{words}</p>{link}</div>\n")
        length += len(parts[-1])
    parts.append("</body></html>")
    return "".join(parts).encode()


def _pages(rng: np.random.Generator, count: int = 64) -> list[bytes]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, size=rng.integers(2, 11))) for _ in range(20000)])
    return [_html(rng, vocab, int(rng.integers(50_000, 200_001))) for _ in range(count)]


def _capture(rng: np.random.Generator, pages: list[bytes], index: int) -> tuple[bytes, bool]:
    """request, response and metadata members of one capture; whether the response is an HTTP 200."""
    url = f"http://site{index % 997}.example/page/{index}"
    kind = rng.random()
    if kind < 0.05:
        block, ok = _http("404 Not Found", "text/html", b"<html>not found</html>"), False
    elif kind < 0.15:
        image = b"\xff\xd8\xff\xe0" + rng.bytes(int(rng.integers(20_000, 300_000)))
        block, ok = _http("200 OK", "image/jpeg", image), True
    else:
        unique = f"<!-- {url} -->".encode()
        block, ok = _http("200 OK", "text/html; charset=utf-8", unique + pages[index % len(pages)]), True
    request = f"GET /page/{index} HTTP/1.1\r\nHost: site{index % 997}.example\r\n\r\n".encode()
    return (
        _member("request", url, request, _REQUEST)
        + _member("response", url, block, _RESPONSE)
        + _member("metadata", url, b"fetchTimeMs: 120\r\n", _FIELDS),
        ok,
    )


def write_warc(path: Path, size_mb: float, big_record_mb: float = 0, seed: int = 0) -> int:
    """Writes a ``.warc.gz`` of about ``size_mb`` MB; returns its number of HTTP 200 responses.

    With ``big_record_mb``, the file holds one HTML page of that many MB among the others.
    """
    rng = np.random.default_rng(seed)
    pages = _pages(rng)
    responses = 0
    with path.open("wb") as out:
        out.write(_member("warcinfo", "", b"software: bench_warc_memory\r\n", _FIELDS))
        if big_record_mb:
            body = b"".join(pages)
            body = (body * (int(big_record_mb * 1e6) // len(body) + 1))[: int(big_record_mb * 1e6)]
            out.write(_member("response", "http://big.example/", _http("200 OK", "text/html", body), _RESPONSE))
            responses += 1
        index = 0
        while out.tell() < size_mb * 1e6:
            members, ok = _capture(rng, pages, index)
            out.write(members)
            responses += ok
            index += 1
    return responses


def _read(path: str) -> None:
    """Child process: walk every record; print records, seconds and peak RSS as JSON."""
    from curation.warc import WarcResponse, iter_warc

    records = failures = 0
    start = time.perf_counter()
    if path:
        with open(path, "rb") as f:
            for item in iter_warc(f, path):
                if isinstance(item, WarcResponse):
                    records += 1
                else:
                    failures += 1
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"records": records, "failures": failures, "seconds": seconds, "peak": peak}))


def _measure(path: Path | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--read", str(path) if path else ""]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--big-record-mb", type=float, default=50, help="0 skips the big-record file")
    parser.add_argument("--read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read is not None:
        _read(args.read)
        return
    cases = [(size, 0.0) for size in args.size_mb]
    if args.big_record_mb:
        cases.append((min(args.size_mb), args.big_record_mb))
    base = _measure(None)
    rows = [("imports only", 0, 0, 0.0, base["peak"])]
    with tempfile.TemporaryDirectory(prefix="bench-warc-") as tmp:
        for size, big in cases:
            path = Path(tmp) / "bench.warc.gz"
            expected = write_warc(path, size, big)
            file_size = path.stat().st_size
            result = _measure(path)
            path.unlink()
            if result["records"] != expected or result["failures"]:
                raise SystemExit(f"read {result} from a file with {expected} responses")
            label = f"{file_size / 1e6:.0f} MB" + (f", one {big:.0f} MB page" if big else "")
            rows.append((label, file_size, result["records"], result["seconds"], result["peak"]))
    print("\n| file (gzip, one member per record) | HTTP 200 records | seconds | MB/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for label, file_size, records, seconds, peak in rows:
        speed = f"{file_size / 1e6 / seconds:.0f}" if seconds else "-"
        print(f"| {label} | {records} | {seconds:.1f} | {speed} | {peak / 2**20:.0f} |")
    plain = rows[1 : 1 + len(args.size_mb)]
    growth = (plain[-1][4] - plain[0][4]) / 2**20
    print(f"\npeak RSS from the {plain[0][0]} to the {plain[-1][0]} file: {growth:+.1f} MB")


if __name__ == "__main__":
    main()
