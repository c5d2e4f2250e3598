"""Webdataset shard writing: deterministic, streamed, hashed while written.

A shard is an uncompressed tar in the webdataset layout: each sample is a group
of members named ``{key}.{ext}``, one per field, written in sorted extension
order, samples in the order given. Every header is fixed (mtime 0, uid/gid 0,
empty user and group names, mode 0o444, PAX format), so the same samples always
give the same bytes and the same sha256.

Writers only ever call ``write`` on the file object they are given (no
``seek``/``tell``), so the file objects that Beam filesystems return work.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

TAR_FORMAT = tarfile.PAX_FORMAT
_ENCODING = "utf-8"
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_END_OF_ARCHIVE = 2 * _BLOCK
_USTAR_SIZE_LIMIT = 8**11  # a size field of 11 octal digits
_SIZE_FIELD = slice(124, 136)  # ustar header fields
_CHECKSUM_FIELD = slice(148, 156)  # summed as if it were eight spaces
_BAD_KEY = re.compile(r"[.\x00\\]|^/|^__|/$|//")
_BAD_EXT = re.compile(r"^$|^[._]|[/\x00\\]")


@dataclass
class Sample:
    """One webdataset sample.

    Attributes:
        key: the ``__key__``: non-empty, no dots, no NUL or backslash, no
            leading ``__`` (webdataset skips such members as metadata), and no
            leading, trailing or doubled ``/``.
        fields: file extension -> bytes, e.g. ``{"jpg": ..., "txt": ..., "json": ...}``;
            extensions are lower case (webdataset lower-cases them when reading),
            may contain dots, and must not start with ``.`` or ``_``.
        text_tokens: text tokens this sample contributes (for the manifest).
        visual_tokens: visual tokens this sample contributes (for the manifest).
    """

    key: str
    fields: dict[str, bytes]
    text_tokens: int = 0
    visual_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.key or _BAD_KEY.search(self.key):
            raise ValueError(f"invalid sample key {self.key!r}")
        if not self.fields:
            raise ValueError(f"sample {self.key!r} has no fields")
        for ext, data in self.fields.items():
            if not isinstance(ext, str) or _BAD_EXT.search(ext) or ext != ext.lower():
                raise ValueError(f"sample {self.key!r}: invalid field extension {ext!r}")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"sample {self.key!r}: field {ext!r} is {type(data).__name__}, not bytes")
        if self.text_tokens < 0 or self.visual_tokens < 0:
            raise ValueError(f"sample {self.key!r}: negative token count")

    @property
    def nbytes(self) -> int:
        """Exact bytes this sample's members take in a shard (headers and padding included)."""
        return sum(_member_bytes(f"{self.key}.{ext}", len(data)) for ext, data in self.fields.items())


@dataclass
class ShardInfo:
    """What the manifest records about one written shard.

    Attributes:
        path: the shard path as given by the caller (the pipeline makes it
            relative to the manifest).
        sha256: hex sha256 of the shard's bytes.
        bytes: size of the shard in bytes.
        samples: number of samples (distinct keys).
        text_tokens: sum of the samples' text tokens.
        visual_tokens: sum of the samples' visual tokens.
    """

    path: str
    sha256: str
    bytes: int
    samples: int
    text_tokens: int
    visual_tokens: int


def plan_shards(samples: Iterable[Sample], max_samples: int, max_bytes: int) -> Iterator[list[Sample]]:
    """Groups samples into shards, in order, rolling over by count and by size.

    A shard gets at most ``max_samples`` samples, and its tar file (exactly as
    :func:`write_shard` will write it) at most ``max_bytes`` bytes, except that
    a single sample too large for any shard gets a shard of its own.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    batch: list[Sample] = []
    batch_bytes = 0
    for sample in samples:
        size = sample.nbytes
        if batch and (len(batch) >= max_samples or archive_bytes(batch_bytes + size) > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(sample)
        batch_bytes += size
    if batch:
        yield batch


def archive_bytes(member_bytes: int) -> int:
    """Size of a tar file whose members take ``member_bytes``: end marker plus record padding."""
    total = member_bytes + _END_OF_ARCHIVE
    return -(-total // _RECORD) * _RECORD


def member_budget(max_bytes: int) -> int:
    """The most member bytes a tar of at most ``max_bytes`` can hold (the inverse of
    :func:`archive_bytes`); negative when not even an empty archive fits."""
    return max_bytes // _RECORD * _RECORD - _END_OF_ARCHIVE


def write_shard(samples: Sequence[Sample], fileobj: BinaryIO, path: str) -> ShardInfo:
    """Writes ``samples`` as one deterministic webdataset tar to ``fileobj``.

    The tar is streamed: ``fileobj`` only needs ``write``. It is not closed.

    Args:
        samples: the shard's samples, written in this order; keys must be unique.
        fileobj: a binary file object opened for writing.
        path: the path recorded in the returned :class:`ShardInfo`.

    Returns:
        The shard's path, sha256, size, sample count and token totals.

    Raises:
        ValueError: on a key that occurs twice.
    """
    seen: set[str] = set()
    for sample in samples:
        if sample.key in seen:
            raise ValueError(f"duplicate sample key {sample.key!r} in shard {path}")
        seen.add(sample.key)
    sink = _HashingWriter(fileobj)
    for sample in samples:
        for ext in sorted(sample.fields):
            _write_member(sink, f"{sample.key}.{ext}", bytes(sample.fields[ext]))
    sink.write(bytes(archive_bytes(sink.count) - sink.count))  # the end marker and record padding
    return ShardInfo(
        path=path,
        sha256=sink.digest.hexdigest(),
        bytes=sink.count,
        samples=len(samples),
        text_tokens=sum(s.text_tokens for s in samples),
        visual_tokens=sum(s.visual_tokens for s in samples),
    )


def shard_name(prefix: str, bucket: int, index: int) -> str:
    """Returns the relative path of a shard, e.g. ``shards/pairs-00003-00001.tar``.

    Args:
        prefix: the dataset's shard prefix (no ``/``).
        bucket: the writer's bucket (the group of samples one worker writes) number.
        index: the shard's number within its bucket.
    """
    if not prefix or "/" in prefix or "\\" in prefix:
        raise ValueError(f"invalid shard prefix {prefix!r}")
    if bucket < 0 or index < 0:
        raise ValueError(f"negative shard bucket or index: {bucket}, {index}")
    return f"shards/{prefix}-{bucket:05d}-{index:05d}.tar"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _one_block(name: str, size: int) -> bool:
    """Whether a member's header is a single ustar block: a name of at most 100 ASCII characters
    and a size of at most 11 octal digits, every other field being fixed (see :func:`_tarinfo`).
    Any other member gets a PAX extended header first."""
    return size < _USTAR_SIZE_LIMIT and len(name) <= tarfile.LENGTH_NAME and name.isascii()


@functools.cache
def _blank_header() -> bytes:
    """The header ``tarfile`` writes for an empty name and size 0 (the fixed fields, as this
    Python's ``tarfile`` writes them)."""
    return _tarinfo("", 0).tobuf(TAR_FORMAT, _ENCODING, "surrogateescape")


def _header(name: str, size: int) -> bytes:
    """A member's header, byte for byte as ``tarfile.TarInfo.tobuf`` makes it: for a single
    block, :func:`_blank_header` with the name, the size and the checksum filled in."""
    if not _one_block(name, size):
        return _tarinfo(name, size).tobuf(TAR_FORMAT, _ENCODING, "surrogateescape")
    header = bytearray(_blank_header())
    header[: len(name)] = name.encode("ascii")
    header[_SIZE_FIELD] = b"%011o\0" % size
    checksum = 8 * ord(" ") + sum(header[: _CHECKSUM_FIELD.start]) + sum(header[_CHECKSUM_FIELD.stop :])
    header[_CHECKSUM_FIELD.start : _CHECKSUM_FIELD.stop - 1] = b"%06o\0" % checksum  # its last byte stays " "
    return bytes(header)


def _header_bytes(name: str, size: int) -> int:
    """``len(_header(name, size))``, without building it in the common case."""
    return _BLOCK if _one_block(name, size) else len(_header(name, size))


def _padding(size: int) -> int:
    """Zero bytes that fill a member's data up to a whole block."""
    return -size % _BLOCK


def _member_bytes(name: str, size: int) -> int:
    return _header_bytes(name, size) + size + _padding(size)


def _write_member(sink: _HashingWriter, name: str, data: bytes) -> None:
    """Writes one member as ``tarfile.TarFile.addfile`` does: header, data, zeros to a block."""
    sink.write(_header(name, len(data)))
    sink.write(data)
    padding = _padding(len(data))
    if padding:
        sink.write(bytes(padding))


class _HashingWriter:
    """Hashes and counts bytes on their way to ``target``."""

    def __init__(self, target: BinaryIO):
        self._target = target
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.count += len(data)
        self._target.write(data)


@dataclass(frozen=True)
class ShardSettings:
    """Shard rollover. Writing spreads over as many workers as there are shards
    (``pipelines.write_shards``), so there is no writer count to set. Shards come
    out somewhat under the limits, which leave room for the spread of a hash
    bucket's size: about 9,700 of 10,000 samples, or half of 16.

    Attributes:
        max_samples: samples per shard at most.
        max_bytes: bytes per shard at most (a larger single sample gets its own shard).
    """

    max_samples: int = 10_000
    max_bytes: int = 1_000_000_000
