import collections
import io
import json

import pytest
import torch
from PIL import Image

from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.reader import shard_urls, webdataset_from_manifest
from manifests.shards import Sample, shard_name, write_shard

SHARDS, PER_SHARD = 4, 25


def jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def sample(shard: int, i: int) -> Sample:
    return Sample(
        key=f"{shard:02d}-{i:03d}",
        fields={
            "jpg": jpeg((10 * shard, 5 * i, 200)),
            "txt": f"caption {shard} {i} ünïcode".encode(),
            "json": json.dumps({"shard": shard, "i": i}).encode(),
        },
        text_tokens=4,
        visual_tokens=128,
    )


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    (root / "shards").mkdir()
    infos = []
    for shard in range(SHARDS):
        name = shard_name("pairs", 0, shard)
        with open(root / name, "wb") as fileobj:
            infos.append(write_shard([sample(shard, i) for i in range(PER_SHARD)], fileobj, name))
    manifest = build_manifest(
        dataset="pairs",
        config={"seed": 1},
        models=[],
        shards=infos,
        funnel=build_funnel(["read", "write"], SHARDS * PER_SHARD, {}),
        dead_letters=0,
        package_version="0.1.0",
    )
    (root / "manifest.json").write_bytes(dump_manifest(manifest))
    return str(root / "manifest.json")


ALL_KEYS = [f"{shard:02d}-{i:03d}" for shard in range(SHARDS) for i in range(PER_SHARD)]


def check_decoded(record):
    shard, i = (int(part) for part in record["__key__"].split("-"))
    assert isinstance(record["jpg"], Image.Image) and record["jpg"].size == (16, 12)
    assert record["txt"] == f"caption {shard} {i} ünïcode"
    assert record["json"] == {"shard": shard, "i": i}


@pytest.mark.parametrize("options", [{}, {"shuffle": 10, "epoch_shuffle_shards": True, "seed": 3}])
def test_dataloader_with_workers_yields_every_sample_once(manifest_path, options):
    dataset = webdataset_from_manifest(manifest_path, **options)
    loader = torch.utils.data.DataLoader(dataset, num_workers=2, batch_size=None)
    records = list(loader)
    counts = collections.Counter(r["__key__"] for r in records)
    assert sorted(counts) == ALL_KEYS
    assert set(counts.values()) == {1}
    for record in records:
        check_decoded(record)


def test_single_process_keeps_manifest_order(manifest_path):
    records = list(webdataset_from_manifest(manifest_path))
    assert [r["__key__"] for r in records] == ALL_KEYS
    for record in records:
        check_decoded(record)


def test_sample_shuffle_is_seeded(manifest_path):
    first = [r["__key__"] for r in webdataset_from_manifest(manifest_path, shuffle=20, seed=7, decode=None)]
    again = [r["__key__"] for r in webdataset_from_manifest(manifest_path, shuffle=20, seed=7, decode=None)]
    assert first == again
    assert first != ALL_KEYS
    assert sorted(first) == ALL_KEYS


def test_shard_order_changes_per_epoch(manifest_path):
    dataset = webdataset_from_manifest(manifest_path, epoch_shuffle_shards=True, seed=1, decode=None)
    epochs = [[r["__key__"] for r in dataset] for _ in range(4)]
    for keys in epochs:
        assert sorted(keys) == ALL_KEYS
        shard_order = [keys[k][:2] for k in range(0, len(keys), PER_SHARD)]
        assert sorted(shard_order) == ["00", "01", "02", "03"]
    assert len({tuple(keys) for keys in epochs}) > 1
    replay = webdataset_from_manifest(manifest_path, epoch_shuffle_shards=True, seed=1, decode=None)
    assert [r["__key__"] for r in replay] == epochs[0]


def test_nodes_split_the_shards(manifest_path, monkeypatch):
    seen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        seen.append([r["__key__"] for r in webdataset_from_manifest(manifest_path, decode=None)])
    assert len(seen[0]) == len(seen[1]) == 2 * PER_SHARD
    assert sorted(seen[0] + seen[1]) == ALL_KEYS


def test_raw_and_tensor_decoding(manifest_path):
    raw = next(iter(webdataset_from_manifest(manifest_path, decode=None)))
    assert raw["jpg"] == sample(0, 0).fields["jpg"]
    assert raw["txt"] == sample(0, 0).fields["txt"]
    tensor = next(iter(webdataset_from_manifest(manifest_path, decode="torchrgb")))
    assert isinstance(tensor["jpg"], torch.Tensor) and tuple(tensor["jpg"].shape) == (3, 12, 16)


def test_shard_urls(manifest_path, tmp_path):
    urls = shard_urls(manifest_path)
    assert urls == [manifest_path.rsplit("/", 1)[0] + f"/shards/pairs-00000-{i:05d}.tar" for i in range(SHARDS)]
    with open(manifest_path, "rb") as fileobj:
        manifest = json.load(fileobj)
    assert shard_urls("gs://bucket/ds/manifest.json", manifest)[0] == "gs://bucket/ds/shards/pairs-00000-00000.tar"
    manifest["totals"]["samples"] += 1
    with pytest.raises(ValueError, match="invalid manifest"):
        shard_urls("gs://bucket/ds/manifest.json", manifest)
