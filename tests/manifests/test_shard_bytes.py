"""Shards written without ``tarfile`` are byte for byte the tars ``tarfile`` writes with the
fixed headers, and ``Sample.nbytes`` still counts them exactly."""

import io
import tarfile

import pytest

from manifests import shards
from manifests.shards import Sample, archive_bytes, write_shard


def tarfile_shard(samples: list[Sample]) -> bytes:
    """The shard as ``tarfile`` streams it: PAX format, mtime 0, uid/gid 0, no names, mode 0o444."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for sample in samples:
            for ext in sorted(sample.fields):
                data = bytes(sample.fields[ext])
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o444
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


SAMPLES = [
    Sample("plain", {"txt": b"a caption", "json": b"{}", "jpg": b"\xff\xd8" + bytes(510)}),
    Sample("empty", {"txt": b"", "bin": bytes(512), "jpg": bytes(513)}),
    Sample("views", {"txt": bytearray(b"from a bytearray"), "jpg": memoryview(bytes(10_240))}),
    Sample("d" * 95, {"jpg": b"x", "json": b"y"}),  # names of 98 and 99 characters: one block
    Sample("e" * 96, {"txt": b"x"}),  # a name of exactly 100 characters: still one block
    Sample("f" * 97, {"json": b"x"}),  # 102 characters: a PAX header first
    Sample("dir/café-ü", {"txt": "non-ASCII name".encode()}),  # a PAX header first
]


@pytest.mark.parametrize("count", [1, 3, len(SAMPLES)])
def test_write_shard_is_byte_identical_to_tarfile(count):
    buffer = io.BytesIO()
    info = write_shard(SAMPLES[:count], buffer, "shards/x.tar")
    expected = tarfile_shard(SAMPLES[:count])
    assert buffer.getvalue() == expected
    assert info.bytes == len(expected)
    assert archive_bytes(sum(sample.nbytes for sample in SAMPLES[:count])) == len(expected)


@pytest.mark.parametrize("name,size", [
    ("a.jpg", 0), ("k/0123.json", 512), ("a" * 100, 1), ("a" * 101, 1), ("é.txt", 1),
    ("a.bin", 8**11 - 1), ("a.bin", 8**11),
])
def test_headers_are_tarfiles_and_their_size_is_known_without_building_them(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert shards._header(name, size) == expected
    assert shards._header_bytes(name, size) == len(expected)
