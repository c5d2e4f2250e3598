"""Reading Common Crawl WARC files: HTTP 200 ``response`` records, failures as data.

Common Crawl ships ``.warc.gz`` files as one gzip member per record. This
reader walks the members itself (with :mod:`zlib`) and frames each one's records
itself (``warcio`` parses only header blocks already cut to size), so a corrupt,
truncated or oversized member or record becomes one :class:`WarcFailure` and
reading resumes at the next gzip member instead of losing the rest of the file.
Every read is bounded (header lines, records, decoded payloads) and nothing is
scanned twice, so time is linear in the file and memory bounded by the record
cap. Plain ``.warc`` files are read with ``warcio`` directly.
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
MAX_RECORD_BYTES = 64 << 20  # default cap on a record: declared length, inflated member, decoded payload
_OUT_STEP = 4 << 20  # most bytes zlib is asked to produce at once
_DECODE_BLOCK = 1 << 14  # content-encoded payload fed to zlib at a time, as warcio does
_MAX_LINE = 1 << 16  # longest header line
_MAX_HEADER = 1 << 20  # longest header block
_MAX_NAME = 1 << 10  # longest gzip file or comment name taken for a member header
_PROBE = 1 << 12  # most compressed bytes read to judge a gzip member found by resync
_MAX_CODINGS = 2  # deepest list of content codings decoded
_CODINGS = ("gzip", "deflate")  # the content codings warcio decodes (without brotli)
_BLANKS = re.compile(rb"\s*")
_DIGITS = re.compile(r"[0-9]+")
_WARC_PARSER = StatusAndHeadersParser(["WARC/1.1", "WARC/1.0", "WARC/0.17", "WARC/0.18"])
_HTTP_PARSER = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False)
_HTTP_STRICT_PARSER = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"])
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
        reason: ``corrupt_member``, ``truncated_member``, ``corrupt_record``, ``corrupt_file``,
            ``record_too_large`` (over the record cap), ``bad_length`` (a ``Content-Length``
            that is no length), ``line_too_long`` / ``header_too_large`` (a header line or
            block over its cap) or ``too_many_encodings``.
        detail: the underlying error message.
    """

    source: str
    offset: int
    reason: str
    detail: str


def iter_warc(
    fileobj: BinaryIO, name: str, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[WarcResponse | WarcFailure]:
    """Yields the HTTP 200 response records of a ``.warc`` or ``.warc.gz``, and failures.

    A ``.warc.gz`` is read in time linear in its size and in memory bounded by a few
    times ``max_record_bytes``: a record whose declared length, inflated member or
    decoded payload passes the cap is a ``record_too_large`` failure, and reading
    goes on at the next member.

    Args:
        fileobj: the file opened in binary mode (any readable stream).
        name: the file name, used as ``source`` in failures.
        max_record_bytes: the cap on one record.
    """
    reader = _Buffer(fileobj)
    if reader.peek(0, 2) == b"\x1f\x8b":
        yield from _iter_gzip(reader, name, max_record_bytes)
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

    def around(self, offset: int, size: int) -> tuple[bytearray, int]:
        """The buffer itself, filled to ``offset + size`` where the file allows, and the
        absolute offset of its first byte (no copy; do not keep it across reads)."""
        self._fill(offset + size)
        return self._data, self._start

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
        if offset <= self._start:
            return
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


class _BadMember(Exception):
    """A gzip member that cannot be read.

    ``resume`` is where reading goes on: the member's exact end when ``exact``, else
    the offset from which to look for the next member.
    """

    def __init__(self, reason: str, detail: str, resume: int, exact: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.resume = resume
        self.exact = exact


class _BadRecord(Exception):
    """A record inside a member that is rejected: ``reason`` names why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _header_end(reader: _Buffer, offset: int) -> int | None:
    """Where the deflate data of the gzip header at ``offset`` starts; ``None`` when that is no
    plausible gzip header. Bounded work: a file or comment name longer than ``_MAX_NAME`` is
    not plausible (zlib would look for its end to the end of the file)."""
    data, base = reader.around(offset, 12)
    lo = offset - base
    if len(data) < lo + 12 or data[lo : lo + 3] != _GZIP_MAGIC or data[lo + 3] & 0xE0:
        return None
    flags = data[lo + 3]
    pos = offset + 10
    if flags & 4:  # FEXTRA: a two-byte length, then that many bytes
        pos += 2 + data[lo + 10] + (data[lo + 11] << 8)
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            data, base = reader.around(pos, _MAX_NAME)
            nul = data.find(b"\0", pos - base, pos - base + _MAX_NAME)
            if nul < 0:
                return None
            pos = base + nul + 1
    if flags & 2:  # FHCRC: the low half of the CRC-32 of the header so far
        head = reader.peek(offset, pos + 2 - offset)
        if len(head) < pos + 2 - offset or zlib.crc32(head[:-2]) & 0xFFFF != int.from_bytes(head[-2:], "little"):
            return None
        pos += 2
    return pos


def _looks_like_record(reader: _Buffer, offset: int) -> bool:
    """Whether a gzip member at ``offset`` starts a WARC record,
    judged from at most ``_PROBE`` compressed bytes, so that skipping garbage stays linear."""
    pos = _header_end(reader, offset)
    if pos is None:
        return False
    inflater = zlib.decompressobj(-15)
    out = b""
    start = pos
    while len(out) < 5 and not inflater.eof:
        if pos - start >= _PROBE:
            return False
        piece = reader.peek(pos, 256)
        if not piece:
            return False
        try:
            out += inflater.decompress(piece, 64)
        except zlib.error:
            return False
        pos += len(piece) - len(inflater.unconsumed_tail)
    return out.startswith(b"WARC/")


def _inflate(reader: _Buffer, offset: int, cap: int) -> tuple[bytes, int]:
    """Decompresses the gzip member at ``offset``; returns its data and the next offset.

    Output past ``cap`` bytes (or compressed input past about ``cap``) is not kept: the
    rest of the member is inflated and dropped as it goes, and the member is a
    ``record_too_large`` failure.

    Raises:
        _BadMember: no valid header, corrupt or truncated data, or a record over the cap.
    """
    if _header_end(reader, offset) is None:
        raise _BadMember("corrupt_member", "no valid gzip header", offset + 1)
    inflater = zlib.decompressobj(31)
    out: list[bytes] = []
    size = 0
    too_large = False
    limit_in = cap + cap // 64 + (1 << 16)  # deflate's worst expansion of incompressible data, with room
    pos = fed = offset
    step = _STEP
    try:
        while not inflater.eof:
            # Feed zlib a view of the buffer (no copy) in steps that start small, as most
            # members are: at the member's end zlib copies the input it did not use into
            # ``unused_data``, so that copy is at most one step, not a whole read chunk.
            with reader.view(pos, step) as chunk:
                fed = pos
                if not len(chunk):
                    raise EOFError("gzip member ends before its end-of-stream marker")
                pos += len(chunk)
                piece = inflater.decompress(chunk, _OUT_STEP)
            while True:
                if not too_large:
                    out.append(piece)
                    size += len(piece)
                    if size > cap or pos - offset > limit_in:
                        too_large = True
                        out.clear()
                if too_large:
                    reader.drop_before(fed)
                if inflater.eof or not inflater.unconsumed_tail:  # zlib leaves the tail set at the end
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, _OUT_STEP)
            step = min(step * 2, _CHUNK)
    except (zlib.error, EOFError) as exc:
        if too_large:
            raise _BadMember("record_too_large", f"member inflates past {cap} bytes, then: {exc}", fed) from None
        reason = "truncated_member" if isinstance(exc, EOFError) else "corrupt_member"
        raise _BadMember(reason, str(exc), offset + 1) from None
    end = pos - len(inflater.unused_data)
    if too_large:
        raise _BadMember("record_too_large", f"member inflates past {cap} bytes", end, exact=True)
    return b"".join(out), end


def _iter_gzip(reader: _Buffer, name: str, cap: int) -> Iterator[WarcResponse | WarcFailure]:
    offset = 0
    while reader.peek(offset, 1):
        reader.drop_before(offset)
        try:
            data, end = _inflate(reader, offset, cap)
        except _BadMember as bad:
            yield WarcFailure(name, offset, bad.reason, str(bad))
            if not bad.exact:
                offset = _resync(reader, bad.resume)
                continue
            end = bad.resume
        else:
            if data:
                yield from _parse_member(data, name, offset, cap)
        if reader.peek(end, 1) and reader.peek(end, 3) != _GZIP_MAGIC:
            yield WarcFailure(name, end, "corrupt_member", "no gzip header where a member should start")
            end = _resync(reader, end)
        offset = end


def _resync(reader: _Buffer, offset: int) -> int:
    """Offset of the next gzip member that starts a WARC record, or the end of the file.

    Each candidate is judged on a bounded prefix (:func:`_looks_like_record`), never
    inflated to its end, so a run of gzip magic bytes is skipped in linear time.
    """
    while True:
        hit = reader.find(_GZIP_MAGIC, offset)
        if hit < 0:
            return reader.end()
        reader.drop_before(hit)
        if _looks_like_record(reader, hit):
            return hit
        offset = hit + 1


def _parse_member(data: bytes, name: str, offset: int, cap: int) -> Iterator[WarcResponse | WarcFailure]:
    """The records of one inflated member, framed here with bounded line reads (warcio's
    line reader rescans a long line at every block; its header parser only ever sees
    header blocks already cut to size here)."""
    pos = 0
    try:
        while True:
            pos = _BLANKS.match(data, pos).end()
            if pos >= len(data):
                return
            head, pos = _header_block(data, pos, len(data))
            headers = _WARC_PARSER.parse(io.BytesIO(head))
            length = _length(headers.get_header("Content-Length"), cap)
            stop = len(data) if length is None else min(pos + length, len(data))
            response = _response(headers, length, data, pos, stop, offset, cap)
            if response is not None:
                yield response
            pos = stop
    except _BadRecord as bad:
        yield WarcFailure(name, offset, bad.reason, str(bad))
    except (StatusAndHeadersParserException, ValueError, EOFError, zlib.error) as exc:
        yield WarcFailure(name, offset, "corrupt_record", str(exc))


def _header_block(data: bytes, pos: int, stop: int) -> tuple[bytes, int]:
    """The header lines at ``pos`` through the first blank one (or ``stop``), and the offset after them.

    Raises:
        _BadRecord: a line longer than ``_MAX_LINE`` or a block longer than ``_MAX_HEADER``.
    """
    start = pos
    while pos < stop:
        newline = data.find(b"\n", pos, min(pos + _MAX_LINE, stop))
        if newline < 0:
            if stop - pos >= _MAX_LINE:
                raise _BadRecord("line_too_long", f"a header line longer than {_MAX_LINE} bytes")
            newline = stop - 1
        line = data[pos : newline + 1]
        pos = newline + 1
        if pos - start > _MAX_HEADER:
            raise _BadRecord("header_too_large", f"header block longer than {_MAX_HEADER} bytes")
        if not line.strip():
            break
    return data[start:pos], pos


def _length(value: str | None, cap: int) -> int | None:
    """A record's declared ``Content-Length``, checked.

    Raises:
        _BadRecord: ``bad_length`` (not a decimal number, negative, absurdly long) or
            ``record_too_large`` (over ``cap``).
    """
    if value is None:
        return None
    text = value.strip()
    if not _DIGITS.fullmatch(text) or len(text) > 18:
        raise _BadRecord("bad_length", f"Content-Length {value[:40]!r}")
    length = int(text)
    if length > cap:
        raise _BadRecord("record_too_large", f"Content-Length {length} over the cap of {cap} bytes")
    return length


def _iter_plain(reader: _Buffer, name: str) -> Iterator[WarcResponse | WarcFailure]:
    stream = _Stream(reader)
    iterator = ArchiveIterator(stream)
    try:
        for record in iterator:
            response = _record_response(record, 0)  # the body must be read before the offset is asked
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


def _target_uri(headers) -> str:
    """``WARC-Target-URI`` as warcio fixes it: ``<...>`` unwrapped, spaces escaped."""
    uri = headers.get_header("WARC-Target-URI")
    if uri is None:
        return ""
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1]
    return uri.replace(" ", "%20")


def _response(
    headers, length: int | None, data: bytes, start: int, stop: int, offset: int, cap: int
) -> WarcResponse | None:
    """The record with WARC ``headers`` and block ``data[start:stop]`` as a response, if it is
    an HTTP 200 ``response`` record."""
    if headers.get_header("WARC-Type") != "response":
        return None
    url = _target_uri(headers)
    if url.startswith(("http:", "https:")) and length != 0:
        parser = _HTTP_PARSER
    elif (headers.get_header("Content-Type") or "").startswith("application/http"):
        # warcio parses HTTP headers only for http(s) URIs; parse them for any other scheme.
        parser = _HTTP_STRICT_PARSER
    else:
        return None
    head, body_start = _header_block(data, start, stop)
    http = parser.parse(io.BytesIO(head))
    if http.get_statuscode() != "200":
        return None
    raw_type = http.get_header("Content-Type") or ""
    match = _HEADER_CHARSET.search(raw_type)
    return WarcResponse(
        url=url,
        date=headers.get_header("WARC-Date") or "",
        content_type=raw_type.split(";")[0].strip().lower(),
        charset=match.group(1) if match else None,
        body=_payload(http, data, body_start, stop, cap),
        record_id=headers.get_header("WARC-Record-ID") or "",
        offset=offset,
        truncated=bool(headers.get_header("WARC-Truncated")),
    )


def _payload(http, data: bytes, start: int, stop: int, cap: int) -> bytes:
    """The payload with chunked transfer and content encodings removed, as warcio's
    ``content_stream`` does, decoded output capped at ``cap`` bytes.

    A list of codings (``gzip, gzip``) is decoded up to ``_MAX_CODINGS`` deep.

    Raises:
        _BadRecord: ``record_too_large`` or ``too_many_encodings``.
    """
    if http.get_header("transfer-encoding") == "chunked":
        body = _dechunk(data, start, stop)
    else:
        body = data[start:stop]
    encoding = (http.get_header("content-encoding") or "").lower()
    if encoding in _CODINGS:
        return _decode(body, encoding, cap)
    codings = [c.strip() for c in encoding.split(",") if c.strip() not in ("", "identity")]
    if len(codings) > 1 and all(c in _CODINGS for c in codings):
        if len(codings) > _MAX_CODINGS:
            raise _BadRecord("too_many_encodings", f"Content-Encoding {encoding[:80]!r}")
        for coding in reversed(codings):
            body = _decode(body, coding, cap)
    return body


def _decode(body: bytes, coding: str, cap: int) -> bytes:
    """One content coding removed, leniently as warcio does: data that does not decode
    from its start is returned as it is (raw deflate is tried for ``deflate``), data that
    breaks off later ends there; only the first gzip member counts.

    Raises:
        _BadRecord: ``record_too_large`` when the output passes ``cap``.
    """
    attempts = (31,) if coding in ("gzip", "x-gzip") else (15, -15)
    view = memoryview(body)
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        out: list[bytes] = []
        size = 0
        try:
            for lo in range(0, len(view), _DECODE_BLOCK):
                piece = inflater.decompress(view[lo : lo + _DECODE_BLOCK], _OUT_STEP)
                while True:
                    out.append(piece)
                    size += len(piece)
                    if size > cap:
                        raise _BadRecord("record_too_large", f"Content-Encoding {coding} inflates past {cap} bytes")
                    if inflater.eof or not inflater.unconsumed_tail:
                        break
                    piece = inflater.decompress(inflater.unconsumed_tail, _OUT_STEP)
                if inflater.eof:
                    break
        except zlib.error:
            if not size:
                continue
        return b"".join(out)
    return bytes(body)


def _dechunk(data: bytes, start: int, stop: int) -> bytes:
    """HTTP chunked transfer coding removed, as warcio's ``ChunkedDataReader`` does: from
    the first malformed chunk header or terminator on the data is taken as it is."""
    out = []
    pos = start
    while pos < stop:
        newline = data.find(b"\n", pos, min(pos + 64, stop))
        line = data[pos : newline + 1] if newline >= 0 else data[pos : min(pos + 64, stop)]
        try:
            if line[-2:] != b"\r\n":
                raise ValueError
            size = int(line[:-2].split(b";")[0], 16)
            if size > 2**31:
                raise ValueError
        except ValueError:
            out.append(data[pos:stop])
            break
        pos += len(line)
        if not size:
            if data[pos : pos + 2] != b"\r\n":
                out.append(line + data[min(pos + 2, stop) : stop])
            break
        chunk = data[pos : min(pos + size, stop)]
        pos += len(chunk)
        if len(chunk) < size:
            out.append(chunk)
            break
        terminator = data[pos : min(pos + 2, stop)]
        pos = min(pos + 2, stop)
        if terminator != b"\r\n":
            out.append(line + chunk + data[pos:stop])
            break
        out.append(chunk)
    return b"".join(out)


def _record_response(record, offset: int) -> WarcResponse | None:
    """A warcio record as a response, if it is an HTTP 200 ``response`` (plain ``.warc`` files)."""
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
