"""The resumable mixture reader: real shards, real manifests, a real DataLoader with workers."""

import collections
import io
import json
import random

import pytest
import torch
from PIL import Image

import manifests.reader as reader
from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.reader import mixture_dataset, mixture_schedule, shard_permutation
from manifests.shards import Sample, shard_name, write_shard

SEED = 11
# source -> samples per shard (uneven on purpose); 300, 120 and 6 samples
SHARDS = {"web": [60, 45, 55, 50, 40, 50], "docs": [30, 25, 35, 30], "tiny": [4, 2]}
SIZES = {name: sum(counts) for name, counts in SHARDS.items()}


def jpeg(color):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_sample(name, shard, i):
    fields = {
        "txt": f"{name} {shard} {i}".encode(),
        "json": json.dumps({"source": name, "shard": shard, "i": i}).encode(),
    }
    if name == "tiny":
        fields["jpg"] = jpeg((40 * shard, 30 * i, 100))
    return Sample(key=f"{name}-{shard}-{i:03d}", fields=fields, text_tokens=3)


def write_dataset(root, name, counts):
    """A dataset folder ``root/name`` with its shards and manifest; returns the manifest path."""
    folder = root / name
    (folder / "shards").mkdir(parents=True)
    infos = []
    for shard, count in enumerate(counts):
        path = shard_name(name, 0, shard)
        with open(folder / path, "wb") as fileobj:
            infos.append(write_shard([make_sample(name, shard, i) for i in range(count)], fileobj, path))
    manifest = build_manifest(
        dataset=name,
        config={"seed": 1},
        models=[],
        shards=infos,
        funnel=build_funnel(["read", "write"], sum(counts), {}),
        dead_letters=0,
        package_version="0.1.0",
    )
    (folder / "manifest.json").write_bytes(dump_manifest(manifest))
    return folder / "manifest.json"


def write_stage(root, filename, draws, absolute=()):
    """A stage manifest in ``root/stages``; source manifests relative to it unless named in ``absolute``."""
    (root / "stages").mkdir(exist_ok=True)
    sources = [
        {
            "name": name,
            "manifest": str(root / name / "manifest.json") if name in absolute else f"../{name}/manifest.json",
            "samples_per_epoch": count,
        }
        for name, count in draws.items()
    ]
    stage = {"kind": "stage", "format_version": 1, "stage": filename, "sources": sources, "weights": "ignored"}
    (root / "stages" / filename).write_text(json.dumps(stage))
    return str(root / "stages" / filename)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    for name, counts in SHARDS.items():
        write_dataset(root, name, counts)
    return root


EXACT = dict(SIZES)  # 300 + 120 + 6 = 426: tiny is 1.4%
ONE_PERCENT = {"web": 300, "docs": 195, "tiny": 5}  # 500: docs repeats, tiny is a 1% subset


@pytest.fixture(scope="module")
def exact_stage(root):
    return write_stage(root, "exact.json", EXACT, absolute=("docs",))


@pytest.fixture(scope="module")
def one_percent_stage(root):
    return write_stage(root, "one_percent.json", ONE_PERCENT)


def row(sample):
    return sample["__position__"], sample["__source__"], sample["__key__"]


def read(manifest, *, rank=0, world_size=1, workers=0, state=None, epoch=None, take=None, decode=None):
    """Reads one rank through a DataLoader; returns the dataset and its rows in delivery order."""
    dataset = mixture_dataset(manifest, rank=rank, world_size=world_size, seed=SEED, decode=decode)
    if state is not None:
        dataset.load_state_dict(state)
    if epoch is not None:
        dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, num_workers=workers, batch_size=None)
    rows = []
    for sample in loader:
        rows.append(row(sample))
        if len(rows) == take:
            break
    return dataset, rows


def assert_within_quota(sources, draws):
    """Every prefix of the global order holds floor or ceil of each source's exact share."""
    total = sum(draws.values())
    assert len(sources) == total
    seen = collections.Counter()
    for n, name in enumerate(sources, start=1):
        seen[name] += 1
        for source, count in draws.items():
            assert n * count // total <= seen[source] <= -(-n * count // total), (n, source, seen[source])


def test_schedule_keeps_every_prefix_within_quota():
    rng = random.Random(0)
    cases = [[300, 120, 6], [300, 195, 5], [1], [7, 7], [1, 999], [3, 5, 7, 11, 13, 17, 19, 23, 29, 31]]
    cases += [[rng.randint(1, rng.choice([3, 50, 400])) for _ in range(rng.randint(2, 12))] for _ in range(40)]
    for draws in cases:
        order = list(mixture_schedule(draws))
        assert_within_quota(order, dict(enumerate(draws)))
        assert order == list(mixture_schedule(draws))
    with pytest.raises(ValueError, match="positive integers"):
        mixture_schedule([3, 0])


@pytest.mark.parametrize("draws_name", ["EXACT", "ONE_PERCENT"])
def test_two_ranks_two_workers_cover_the_epoch_in_the_global_order(request, draws_name):
    draws = {"EXACT": EXACT, "ONE_PERCENT": ONE_PERCENT}[draws_name]
    stage = request.getfixturevalue({"EXACT": "exact_stage", "ONE_PERCENT": "one_percent_stage"}[draws_name])
    total = sum(draws.values())
    _, reference = read(stage)  # one rank, in process
    assert [p for p, _, _ in reference] == list(range(total))
    per_rank = [read(stage, rank=rank, world_size=2, workers=2)[1] for rank in (0, 1)]
    for rank, rows in enumerate(per_rank):
        # the DataLoader delivers rank r's j-th sample from global position 2j + r
        assert [p for p, _, _ in rows] == list(range(rank, total, 2))
    merged = sorted(per_rank[0] + per_rank[1])
    assert merged == reference  # the same global order, whatever the split

    assert_within_quota([source for _, source, _ in merged], draws)
    tiny = [p for p, source, _ in merged if source == "tiny"]
    assert len(tiny) == draws["tiny"] and tiny[0] < -(-total // draws["tiny"])  # 1%: within the first 100

    for name, count in draws.items():
        keys = collections.Counter(key for _, source, key in merged if source == name)
        assert all(key.startswith(f"{name}-") for key in keys)
        assert sum(keys.values()) == count
        if count <= SIZES[name]:
            assert set(keys.values()) == {1} and len(keys) == count  # each sample once (or a subset)
        else:
            assert len(keys) == SIZES[name]
            assert set(keys.values()) <= {count // SIZES[name], -(-count // SIZES[name])}


@pytest.mark.parametrize("world_size, workers", [(1, 2), (2, 1), (3, 0)])
def test_resume_from_two_ranks_yields_exactly_the_rest(exact_stage, world_size, workers):
    total, taken = sum(EXACT.values()), 37
    _, reference = read(exact_stage)
    saved = [read(exact_stage, rank=rank, world_size=2, workers=2, take=taken) for rank in (0, 1)]
    seen = saved[0][1] + saved[1][1]
    assert sorted(p for p, _, _ in seen) == list(range(2 * taken))
    states = [dataset.state_dict(consumed=taken) for dataset, _ in saved]
    assert states[0] == states[1] == {"seed": SEED, "epoch": 0, "position": 2 * taken}
    state = json.loads(json.dumps(states[0]))

    resumed = [
        read(exact_stage, rank=rank, world_size=world_size, workers=workers, state=state) for rank in range(world_size)
    ]
    for rank, (dataset, rows) in enumerate(resumed):
        assert [p for p, _, _ in rows] == list(range(2 * taken + rank, total, world_size))
        assert len(dataset) == len(rows)
    rest = sorted(r for _, rows in resumed for r in rows)
    assert rest == reference[2 * taken :]  # none repeated, none skipped, same samples at each position
    assert sorted(seen + rest) == reference


def test_state_in_process_and_across_epochs(exact_stage):
    dataset = mixture_dataset(exact_stage, rank=1, world_size=2, seed=SEED, decode=None)
    iterator = iter(dataset)
    first = [row(next(iterator)) for _ in range(10)]
    assert [p for p, _, _ in first] == list(range(1, 21, 2))
    assert dataset.state_dict() == {"seed": SEED, "epoch": 0, "position": 20}

    iterator.close()

    other = mixture_dataset(exact_stage, seed=SEED, decode=None)
    other.set_epoch(1)
    epoch_one = [row(s) for s in other]
    assert other.state_dict() == {"seed": SEED, "epoch": 1, "position": sum(EXACT.values())}
    other.load_state_dict({"seed": SEED, "epoch": 1, "position": 100})
    other.set_epoch(1)  # the same epoch keeps the loaded position
    assert [row(s) for s in other] == epoch_one[100:]
    other.set_epoch(2)  # another epoch starts at its beginning
    assert len(other) == sum(EXACT.values())
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict({"seed": SEED + 1, "epoch": 0, "position": 0})
    with pytest.raises(ValueError, match="position"):
        other.load_state_dict({"seed": SEED, "epoch": 0, "position": sum(EXACT.values()) + 1})


def test_another_epoch_is_another_order_of_the_same_draws(one_percent_stage):
    _, epoch0 = read(one_percent_stage)
    _, epoch1 = read(one_percent_stage, epoch=1, workers=2)
    _, again = read(one_percent_stage, epoch=0, workers=2)
    assert again == epoch0
    assert [key for _, _, key in epoch1] != [key for _, _, key in epoch0]
    assert [source for _, source, _ in epoch1] == [source for _, source, _ in epoch0]  # the schedule is per stage
    # docs draws 195 of 120 and tiny 5 of 6: the subsets differ by epoch, whole passes do not
    for name in ("web",):
        assert collections.Counter(k for _, s, k in epoch1 if s == name) == collections.Counter(
            k for _, s, k in epoch0 if s == name
        )
    first_docs_pass = [k for _, s, k in epoch1 if s == "docs"][: SIZES["docs"]]
    assert len(set(first_docs_pass)) == SIZES["docs"]  # a pass holds every sample once


def test_more_draws_than_samples_repeat_the_source(root):
    stage = write_stage(root, "repeat.json", {"docs": 250})
    _, rows = read(stage, world_size=1, workers=2)
    counts = collections.Counter(key for _, _, key in rows)
    assert len(counts) == SIZES["docs"] and sum(counts.values()) == 250
    assert collections.Counter(counts.values()) == {2: 120 - 10, 3: 10}
    passes = [[key for _, _, key in rows[start : start + SIZES["docs"]]] for start in (0, SIZES["docs"])]
    assert all(len(set(keys)) == SIZES["docs"] for keys in passes)
    assert passes[0] != passes[1]  # each pass has its own shard permutation


def test_a_plain_dataset_manifest_is_one_source(root):
    path = str(root / "tiny" / "manifest.json")
    samples = list(mixture_dataset(path, seed=SEED))  # decode="pil"
    expected = [f"tiny-{shard}-{i:03d}" for shard, count in enumerate(SHARDS["tiny"]) for i in range(count)]
    assert sorted(s["__key__"] for s in samples) == expected
    for sample in samples:
        shard, i = (int(part) for part in sample["__key__"].split("-")[1:])
        assert sample["__source__"] == "tiny" and sample["__epoch__"] == 0
        assert isinstance(sample["jpg"], Image.Image) and sample["jpg"].size == (8, 6)
        assert sample["txt"] == f"tiny {shard} {i}"
        assert sample["json"] == {"source": "tiny", "shard": shard, "i": i}
    raw = next(iter(mixture_dataset(path, seed=SEED, decode=None)))
    assert isinstance(raw["jpg"], bytes) and isinstance(raw["txt"], bytes)

    _, rows = read(str(root / "web" / "manifest.json"), rank=1, world_size=2, workers=2)
    assert len(rows) == SIZES["web"] // 2 and len({key for _, _, key in rows}) == len(rows)


def test_resume_does_not_open_consumed_shards(root, monkeypatch):
    opened = []

    def opener(url):
        opened.append(url)
        return open(url, "rb")

    monkeypatch.setattr(reader, "default_opener", opener)
    dataset = mixture_dataset(str(root / "web" / "manifest.json"), seed=SEED, decode=None)
    dataset.load_state_dict({"seed": SEED, "epoch": 0, "position": 200})
    rows = [row(s) for s in dataset]
    assert [p for p, _, _ in rows] == list(range(200, 300))
    order = shard_permutation(SEED, 0, "web", 0, len(SHARDS["web"]))
    ends = [sum(SHARDS["web"][k] for k in order[: n + 1]) for n in range(len(order))]
    needed = [order[n] for n in range(len(order)) if ends[n] > 200]
    assert [url.rsplit("-", 1)[1] for url in opened] == [f"{k:05d}.tar" for k in needed]


def test_a_source_without_shards_is_named(root):
    empty = root / "empty-news"
    empty.mkdir()
    manifest = build_manifest(
        dataset="empty-news",
        config={},
        models=[],
        shards=[],
        funnel=build_funnel(["read", "quality"], 10, {("quality", "too_short"): 10}),
        dead_letters=0,
        package_version="0.1.0",
    )
    (empty / "manifest.json").write_bytes(dump_manifest(manifest))
    stage = write_stage(root, "with_empty.json", {"web": 300, "empty-news": 10})
    with pytest.raises(ValueError, match="source 'empty-news'.*lists no shards.*quality: too_short"):
        mixture_dataset(stage)


@pytest.mark.parametrize(
    "sources, message",
    [
        ([{"name": "web", "manifest": "../web/manifest.json", "samples_per_epoch": 0}], "'web': samples_per_epoch"),
        ([{"name": "web", "manifest": "../web/manifest.json", "samples_per_epoch": 2}] * 2, "'web' repeats"),
        ([{"name": "gone", "manifest": "../gone/manifest.json", "samples_per_epoch": 2}], "'gone': cannot read"),
        ([], "non-empty list"),
    ],
)
def test_invalid_stage_manifests(root, sources, message):
    path = root / "stages" / "bad.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"kind": "stage", "sources": sources}))
    with pytest.raises(ValueError, match=message):
        mixture_dataset(str(path))


def test_a_shard_shorter_than_its_manifest_fails(tmp_path):
    path = write_dataset(tmp_path, "short", [5, 5])
    with open(tmp_path / "short" / shard_name("short", 0, 1), "wb") as fileobj:
        write_shard([make_sample("short", 1, i) for i in range(3)], fileobj, "x")
    with pytest.raises(ValueError, match="ends after 3 samples, but its manifest says 5"):
        list(mixture_dataset(str(path), decode=None))
    with pytest.raises(ValueError, match="rank"):
        mixture_dataset(str(path), rank=2, world_size=2)


class CountingFile(io.RawIOBase):
    """A file that counts the bytes read from it; ``seekable=False`` makes it a plain stream."""

    def __init__(self, path, counter, seekable):
        self._file, self._counter, self._seekable = open(path, "rb"), counter, seekable

    def readable(self):
        return True

    def seekable(self):
        return self._seekable

    def seek(self, offset, whence=io.SEEK_SET):
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def readinto(self, buffer):
        n = self._file.readinto(buffer)
        self._counter[0] += n
        return n

    def close(self):
        self._file.close()
        super().close()


@pytest.mark.parametrize("seekable", [True, False])
def test_a_reader_reads_only_its_own_samples_bytes_where_the_shard_can_seek(tmp_path, monkeypatch, seekable):
    folder = tmp_path / "big"
    (folder / "shards").mkdir(parents=True)
    payload = random.Random(3).randbytes(20_000)
    infos = []
    for shard in range(2):
        path = shard_name("big", 0, shard)
        samples = [Sample(key=f"big-{shard}-{i:02d}", fields={"bin": payload, "txt": f"{shard} {i}".encode()})
                   for i in range(20)]
        with open(folder / path, "wb") as fileobj:
            infos.append(write_shard(samples, fileobj, path))
    manifest = build_manifest(dataset="big", config={}, models=[], shards=infos,
                              funnel=build_funnel(["read"], 40, {}), dead_letters=0, package_version="0")
    (folder / "manifest.json").write_bytes(dump_manifest(manifest))
    counter = [0]
    monkeypatch.setattr(reader, "default_opener", lambda url: CountingFile(url, counter, seekable))
    texts = [s["txt"] for s in mixture_dataset(str(folder / "manifest.json"), rank=1, world_size=4, decode=None)]
    monkeypatch.undo()
    expected = [s["txt"] for s in mixture_dataset(str(folder / "manifest.json"), decode=None)][1::4]
    assert texts == expected and len(texts) == 10
    total = sum(info.bytes for info in infos)
    if seekable:
        assert counter[0] < 0.35 * total, "the other three readers' samples were read"
    else:
        assert counter[0] >= 0.9 * total, "a stream that cannot seek is read through"
