"""Reading Common Crawl WARC files: HTTP 200 ``response`` records, failures as data.

Common Crawl ships ``.warc.gz`` files as one gzip member per record. This
reader walks the members itself (with :mod:`zlib`) and parses each one with
``warcio``, so a corrupt or truncated member becomes one :class:`WarcFailure`
and reading resumes at the next gzip header instead of losing the rest of the
file. Plain ``.warc`` files are read with ``warcio`` directly.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeadersParser, StatusAndHeadersParserException

_GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 20  # bytes read from the file at a time
_STEP = 1 << 16  # compressed bytes first fed to zlib per member; doubled while the member goes on
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.+-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([a-zA-Z0-9_:.+-]+)", re.IGNORECASE)
# WHATWG encoding-standard aliases: what browsers really decode these labels as.
_WHATWG = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
}


@dataclass(frozen=True)
class WarcResponse:
    """One HTTP 200 response record.

    Attributes:
        url: the ``WARC-Target-URI``.
        date: the ``WARC-Date``.
        content_type: the HTTP ``Content-Type`` media type, lower-cased, without parameters.
        charset: the HTTP ``Content-Type`` charset parameter, if any.
        body: the payload, with chunked and content encodings removed.
        record_id: the ``WARC-Record-ID``.
        offset: byte offset of the record (its gzip member) in the file.
        truncated: the crawler cut the payload short (``WARC-Truncated``; Common Crawl
            truncates payloads over its size limit).
    """

    url: str
    date: str
    content_type: str
    charset: str | None
    body: bytes
    record_id: str
    offset: int
    truncated: bool = False


@dataclass(frozen=True)
class WarcFailure:
    """A part of a WARC file that could not be read.

    Attributes:
        source: the file name given to :func:`iter_warc`.
        offset: byte offset where the bad part starts.
        reason: ``corrupt_member``, ``truncated_member``, ``corrupt_record`` or ``corrupt_file``.
        detail: the underlying error message.
    """

    source: str
    offset: int
    reason: str
    detail: str


def iter_warc(fileobj: BinaryIO, name: str) -> Iterator[WarcResponse | WarcFailure]:
    """Yields the HTTP 200 response records of a ``.warc`` or ``.warc.gz``, and failures.

    Args:
        fileobj: the file opened in binary mode (any readable stream).
        name: the file name, used as ``source`` in failures.
    """
    reader = _Buffer(fileobj)
    if reader.peek(0, 2) == b"\x1f\x8b":
        yield from _iter_gzip(reader, name)
    else:
        yield from _iter_plain(reader, name)


def decode_html(body: bytes, charset: str | None) -> str:
    """Decodes an HTML payload to text.

    The charset comes from the HTTP header, else a byte-order mark, else
    ``<meta charset>`` / ``http-equiv`` in the first 4 KiB, else
    ``charset-normalizer`` when installed, else UTF-8; undecodable bytes are
    replaced.
    """
    for label in (charset, _bom(body), _meta_charset(body)):
        codec = _codec(label)
        if codec:
            return body.decode(codec, errors="replace")
    try:
        body.decode("utf-8")
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return body.decode("utf-8", errors="replace")
    best = from_bytes(body[:65536]).best()
    codec = _codec(best.encoding if best else None) or "utf-8"
    return body.decode(codec, errors="replace")


class _Buffer:
    """A growable window over a stream, addressed by absolute file offsets."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._file = fileobj
        self._data = bytearray()
        self._start = 0
        self._eof = False

    def _fill(self, end: int) -> None:
        while not self._eof and self._start + len(self._data) < end:
            chunk = self._file.read(_CHUNK)
            if not chunk:
                self._eof = True
            self._data += chunk

    def peek(self, offset: int, size: int) -> bytes:
        self._fill(offset + size)
        lo = offset - self._start
        return bytes(self._data[lo : lo + size])

    def view(self, offset: int, size: int) -> memoryview:
        """Up to ``size`` bytes at ``offset`` without copying them.

        Release the view (``with reader.view(...) as chunk:``) before the next call
        that reads or drops: a bytearray with a live view cannot be resized.
        """
        self._fill(offset + size)
        lo = offset - self._start
        with memoryview(self._data) as whole:
            return whole[lo : lo + size]

    def drop_before(self, offset: int) -> None:
        del self._data[: offset - self._start]
        self._start = offset

    def end(self) -> int:
        """Absolute offset of the end of the stream (reads it all)."""
        self._fill(1 << 62)
        return self._start + len(self._data)

    def find(self, needle: bytes, offset: int) -> int:
        """Absolute offset of the next ``needle`` at or after ``offset``, or -1."""
        while True:
            hit = self._data.find(needle, max(offset - self._start, 0))
            if hit >= 0:
                return self._start + hit
            if self._eof:
                return -1
            keep = max(len(self._data) - len(needle), 0)
            offset = self._start + keep
            self.drop_before(offset)
            self._fill(self._start + len(self._data) + _CHUNK)


def _inflate(reader: _Buffer, offset: int) -> tuple[bytes, int]:
    """Decompresses the gzip member at ``offset``; returns its data and the next offset.

    Raises:
        zlib.error: corrupt compressed data.
        EOFError: the member is truncated.
    """
    inflater = zlib.decompressobj(31)
    out = []
    pos = offset
    step = _STEP
    while not inflater.eof:
        # Feed zlib a view of the buffer (no copy) in steps that start small, as most
        # members are: at the member's end zlib copies the input it did not use into
        # ``unused_data``, so that copy is at most one step, not a whole read chunk.
        with reader.view(pos, step) as chunk:
            size = len(chunk)
            if not size:
                raise EOFError("gzip member ends before its end-of-stream marker")
            out.append(inflater.decompress(chunk))
        pos += size
        step = min(step * 2, _CHUNK)
    return b"".join(out), pos - len(inflater.unused_data)


def _iter_gzip(reader: _Buffer, name: str) -> Iterator[WarcResponse | WarcFailure]:
    offset = 0
    while reader.peek(offset, 1):
        reader.drop_before(offset)
        try:
            data, end = _inflate(reader, offset)
        except (zlib.error, EOFError) as exc:
            reason = "truncated_member" if isinstance(exc, EOFError) else "corrupt_member"
            yield WarcFailure(name, offset, reason, str(exc))
            offset = _resync(reader, offset + 1)
            continue
        if data:
            yield from _parse_member(data, name, offset)
        if reader.peek(end, 1) and reader.peek(end, 3) != _GZIP_MAGIC:
            yield WarcFailure(name, end, "corrupt_member", "no gzip header where a member should start")
            end = _resync(reader, end)
        offset = end


def _resync(reader: _Buffer, offset: int) -> int:
    """Offset of the next gzip member that decompresses, or the end of the file."""
    while True:
        hit = reader.find(_GZIP_MAGIC, offset)
        if hit < 0:
            return reader.end()
        try:
            _inflate(reader, hit)
        except (zlib.error, EOFError):
            offset = hit + 1
            continue
        return hit



def _parse_member(data: bytes, name: str, offset: int) -> Iterator[WarcResponse | WarcFailure]:
    try:
        for record in ArchiveIterator(io.BytesIO(data)):
            response = _response(record, offset)
            if response is not None:
                yield response
    except (ArchiveLoadFailed, StatusAndHeadersParserException, ValueError, EOFError, zlib.error) as exc:
        yield WarcFailure(name, offset, "corrupt_record", str(exc))


def _iter_plain(reader: _Buffer, name: str) -> Iterator[WarcResponse | WarcFailure]:
    stream = _Stream(reader)
    iterator = ArchiveIterator(stream)
    try:
        for record in iterator:
            response = _response(record, 0)  # the body must be read before the offset is asked
            if response is not None:
                yield dataclasses.replace(response, offset=iterator.get_record_offset())
    except (ArchiveLoadFailed, StatusAndHeadersParserException, ValueError, EOFError, zlib.error) as exc:
        yield WarcFailure(name, stream.tell(), "corrupt_file", str(exc))


class _Stream(io.RawIOBase):
    """The unread part of a :class:`_Buffer` as a readable stream."""

    def __init__(self, reader: _Buffer) -> None:
        self._reader = reader
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        data = self._reader.peek(self._pos, size if size >= 0 else 1 << 62)
        self._pos += len(data)
        self._reader.drop_before(self._pos)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _response(record, offset: int) -> WarcResponse | None:
    if record.rec_type != "response":
        return None
    http = record.http_headers
    if http is None:
        # warcio parses HTTP headers only for http(s) URIs; parse them for any other scheme.
        if not (record.rec_headers.get_header("Content-Type") or "").startswith("application/http"):
            return None
        http = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"]).parse(record.raw_stream)
        record.http_headers = http
    if http.get_statuscode() != "200":
        return None
    raw_type = http.get_header("Content-Type") or ""
    match = _HEADER_CHARSET.search(raw_type)
    return WarcResponse(
        url=record.rec_headers.get_header("WARC-Target-URI") or "",
        date=record.rec_headers.get_header("WARC-Date") or "",
        content_type=raw_type.split(";")[0].strip().lower(),
        charset=match.group(1) if match else None,
        body=record.content_stream().read(),
        record_id=record.rec_headers.get_header("WARC-Record-ID") or "",
        offset=offset,
        truncated=bool(record.rec_headers.get_header("WARC-Truncated")),
    )


def _bom(body: bytes) -> str | None:
    boms = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
    for bom, label in boms:
        if body.startswith(bom):
            return label
    return None


def _meta_charset(body: bytes) -> str | None:
    match = _CHARSET.search(body[:4096])
    return match.group(1).decode("ascii") if match else None


def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label, or ``None`` when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _WHATWG.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None
