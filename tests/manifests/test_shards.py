import hashlib
import io
import json
import tarfile

import pytest
import webdataset as wds

from manifests.shards import (
    Sample, ShardInfo, archive_bytes, member_budget, plan_shards, shard_name, write_shard,
)


def make_sample(i: int, payload: int = 10) -> Sample:
    return Sample(
        key=f"s{i:04d}",
        fields={
            "txt": f"caption {i}".encode(),
            "json": json.dumps({"i": i}).encode(),
            "jpg": bytes([i % 256]) * payload,
        },
        text_tokens=i,
        visual_tokens=128,
    )


def write_bytes(samples, path="shards/a.tar") -> tuple[bytes, ShardInfo]:
    buffer = io.BytesIO()
    info = write_shard(samples, buffer, path)
    return buffer.getvalue(), info


class PipeWriter:
    """A write-only sink like a pipe or an object-store upload: no seek, no tell."""

    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(bytes(data))
        return len(data)

    def seek(self, *args):
        raise OSError("not seekable")

    def tell(self):
        raise OSError("not seekable")

    def seekable(self):
        return False


@pytest.mark.parametrize("key", ["", "a.b", "/abs", "dir/", "a//b", "__meta", "nul\x00", "back\\slash"])
def test_sample_rejects_bad_keys(key):
    with pytest.raises(ValueError, match="invalid sample key"):
        Sample(key, {"txt": b"x"})


@pytest.mark.parametrize("ext", ["", ".txt", "_x", "a/b", "JPG"])
def test_sample_rejects_bad_extensions(ext):
    with pytest.raises(ValueError, match="invalid field extension"):
        Sample("k", {ext: b"x"})


def test_sample_rejects_non_bytes_empty_fields_and_negative_tokens():
    with pytest.raises(TypeError, match="not bytes"):
        Sample("k", {"txt": "a str"})
    with pytest.raises(ValueError, match="no fields"):
        Sample("k", {})
    with pytest.raises(ValueError, match="negative"):
        Sample("k", {"txt": b"x"}, text_tokens=-1)


def test_sample_keys_with_folders_and_multi_dot_extensions_are_allowed():
    sample = Sample("part/abc", {"seg.png": b"x"})
    data, _ = write_bytes([sample])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["part/abc.seg.png"]


@pytest.mark.parametrize(
    "key",
    ["short", "k" * 150, "dir/" * 30 + "deep", "ключ-日本"],  # ustar name, prefix/name split, PAX path header
)
def test_nbytes_is_exact_tar_footprint(key):
    samples = [Sample(key, {"txt": b"x" * 700, "json": b"{}"}), make_sample(1, payload=513)]
    data, info = write_bytes(samples)
    assert len(data) == info.bytes == archive_bytes(sum(s.nbytes for s in samples))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames()[:2] == [f"{key}.json", f"{key}.txt"]


def test_write_is_deterministic_and_headers_are_fixed():
    samples = [make_sample(i) for i in range(5)]
    first, info_a = write_bytes(samples)
    second, info_b = write_bytes(samples)
    assert first == second
    assert info_a == info_b
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["s0000.jpg", "s0000.json", "s0000.txt"]
    assert [m.name.split(".")[0] for m in members[::3]] == [s.key for s in samples]
    for member in members:
        assert (member.mtime, member.mode, member.uid, member.gid) == (0, 0o444, 0, 0)
        assert (member.uname, member.gname) == ("", "")
        assert member.isreg()


def test_shard_info_matches_file_and_counts(tmp_path):
    samples = [make_sample(i) for i in range(7)]
    target = tmp_path / "x.tar"
    with open(target, "wb") as fileobj:
        info = write_shard(samples, fileobj, "shards/x.tar")
    data = target.read_bytes()
    assert info == ShardInfo(
        path="shards/x.tar",
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        samples=7,
        text_tokens=sum(range(7)),
        visual_tokens=7 * 128,
    )


def test_write_to_non_seekable_stream():
    samples = [make_sample(i, payload=30_000) for i in range(4)]
    sink = PipeWriter()
    info = write_shard(samples, sink, "p.tar")
    data = b"".join(sink.chunks)
    expected, _ = write_bytes(samples)
    assert data == expected
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.bytes == len(data)


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="duplicate sample key 's0001'"):
        write_bytes([make_sample(1), make_sample(2), make_sample(1)])


def test_shard_reads_back_with_tarfile_and_webdataset(tmp_path):
    samples = [make_sample(i) for i in range(6)]
    target = tmp_path / "r.tar"
    with open(target, "wb") as fileobj:
        write_shard(samples, fileobj, "r.tar")
    with tarfile.open(target) as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert contents == {f"{s.key}.{ext}": data for s in samples for ext, data in s.fields.items()}
    read = list(wds.WebDataset(str(target), shardshuffle=False))
    assert [r["__key__"] for r in read] == [s.key for s in samples]
    for record, sample in zip(read, samples, strict=True):
        assert {k: record[k] for k in sample.fields} == sample.fields


def test_plan_rolls_over_by_count_in_order():
    samples = [make_sample(i) for i in range(25)]
    plan = list(plan_shards(samples, max_samples=10, max_bytes=10**9))
    assert [len(shard) for shard in plan] == [10, 10, 5]
    assert [s for shard in plan for s in shard] == samples


def test_plan_rolls_over_by_bytes_and_written_shards_fit():
    samples = [make_sample(i, payload=1000 + 700 * (i % 5)) for i in range(40)]
    max_bytes = 30_000
    plan = list(plan_shards(samples, max_samples=1000, max_bytes=max_bytes))
    assert len(plan) > 2
    assert [s for shard in plan for s in shard] == samples
    for shard, following in zip(plan, [*plan[1:], None], strict=True):
        _, info = write_bytes(shard)
        assert info.bytes <= max_bytes
        if following:  # greedy: the next sample would not have fitted
            assert archive_bytes(sum(s.nbytes for s in shard) + following[0].nbytes) > max_bytes


def test_plan_gives_an_oversized_sample_its_own_shard():
    small_a, huge, small_b = make_sample(1), make_sample(2, payload=50_000), make_sample(3)
    plan = list(plan_shards([small_a, huge, small_b], max_samples=10, max_bytes=20_480))
    assert plan == [[small_a], [huge], [small_b]]
    assert write_bytes(plan[1])[1].bytes > 20_480


def test_plan_rejects_bad_limits_and_handles_empty_input():
    assert list(plan_shards([], 10, 10_000)) == []
    with pytest.raises(ValueError):
        list(plan_shards([make_sample(1)], 0, 10_000))
    with pytest.raises(ValueError):
        list(plan_shards([make_sample(1)], 10, 0))


def test_member_budget_is_the_most_an_archive_of_max_bytes_holds():
    for max_bytes in (20_480, 20_481, 30_719, 1_000_000_000):
        budget = member_budget(max_bytes)
        assert archive_bytes(budget) <= max_bytes < archive_bytes(budget + 1)
    assert member_budget(10_239) < 0


def test_shard_name():
    assert shard_name("pairs", 3, 1) == "shards/pairs-00003-00001.tar"
    assert shard_name("pairs", 3, 1) == shard_name("pairs", 3, 1)
    assert shard_name("docs", 0, 123456) == "shards/docs-00000-123456.tar"
    for prefix, bucket, index in [("", 0, 0), ("a/b", 0, 0), ("a", -1, 0), ("a", 0, -1)]:
        with pytest.raises(ValueError):
            shard_name(prefix, bucket, index)
