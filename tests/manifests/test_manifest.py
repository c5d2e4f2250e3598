import copy
import dataclasses
import datetime
import hashlib
import json

import fsspec
import pytest

from manifests.manifest import (
    FORMAT_VERSION,
    FunnelStep,
    build_funnel,
    build_manifest,
    default_opener,
    dump_manifest,
    load_manifest,
    resolve_path,
    validate_manifest,
    verify_manifest,
)
from manifests.shards import Sample, shard_name, write_shard

CONFIG = {"dataset": "pairs", "filters": {"clip_min": 0.28, "langs": ["en", "fr"]}, "shard": {"max_samples": 5}}
MODELS = [
    {"name": "clip", "role": "score", "weights": "random-init", "arch": "ViT-B-32"},
    {"name": "captioner", "role": "synth", "weights": "/models/cap"},
]


def samples_for(shard: int, count: int) -> list[Sample]:
    return [
        Sample(f"p{shard}-{i:03d}", {"txt": f"text {shard} {i}".encode(), "bin": bytes([i]) * (i * 37)}, 3, 128)
        for i in range(count)
    ]


def write_dataset(root, counts=(5, 5, 3)):
    """Writes shards under ``root/shards`` and ``root/manifest.json``; returns the manifest."""
    infos = []
    for index, count in enumerate(counts):
        name = shard_name("pairs", 0, index)
        with fsspec.open(f"{root}/{name}", "wb", auto_mkdir=True) as fileobj:
            infos.append(write_shard(samples_for(index, count), fileobj, name))
    total = sum(counts)
    drops = {("read", "unreadable"): 1, ("filter", "low_clip"): 3}
    funnel = build_funnel(["read", "filter", "write"], total + 4, drops)
    manifest = build_manifest(
        dataset="pairs",
        config=CONFIG,
        models=MODELS,
        shards=infos[::-1],
        funnel=funnel,
        dead_letters=1,
        package_version="0.1.0",
        created_at="2024-05-01T12:00:00Z",
    )
    with fsspec.open(f"{root}/manifest.json", "wb") as fileobj:
        fileobj.write(dump_manifest(manifest))
    return manifest


@pytest.fixture
def good_manifest(tmp_path):
    return write_dataset(tmp_path)


def test_funnel_walks_steps_in_order():
    funnel = build_funnel(
        ["read", "quality", "dedup"],
        100,
        {("read", "unreadable"): 2, ("quality", "short_text"): 10, ("quality", "blurry"): 5, ("dedup", "exact"): 3},
    )
    assert funnel == [
        FunnelStep("read", 100, 98, {"unreadable": 2}),
        FunnelStep("quality", 98, 83, {"short_text": 10, "blurry": 5}),
        FunnelStep("dedup", 83, 80, {"exact": 3}),
    ]
    assert funnel[1].to_dict() == {"step": "quality", "in": 98, "out": 83, "dropped": {"blurry": 5, "short_text": 10}}
    assert FunnelStep.from_dict(funnel[1].to_dict()) == funnel[1]
    assert build_funnel(["a", "b"], 7, {}) == [FunnelStep("a", 7, 7, {}), FunnelStep("b", 7, 7, {})]


@pytest.mark.parametrize(
    "steps, inputs, dropped, message",
    [
        (["read"], 10, {("filter", "x"): 1}, "unknown step 'filter'"),
        (["read", "filter"], 10, {("read", "x"): 4, ("filter", "y"): 7}, "step 'filter' drops 7"),
        (["read", "read"], 10, {}, "repeated step"),
        (["read"], 10, {("read", "x"): -1}, "negative drop count"),
        (["read"], -1, {}, "negative input"),
    ],
)
def test_funnel_errors(steps, inputs, dropped, message):
    with pytest.raises(ValueError, match=message):
        build_funnel(steps, inputs, dropped)


def test_build_manifest_contents(good_manifest):
    m = good_manifest
    assert m["format_version"] == FORMAT_VERSION == 1
    assert m["config"] == CONFIG
    canonical = json.dumps(CONFIG, sort_keys=True, separators=(",", ":")).encode()
    assert m["config_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert [s["path"] for s in m["shards"]] == sorted(s["path"] for s in m["shards"])
    assert set(m["shards"][0]) == {"path", "sha256", "bytes", "samples", "text_tokens", "visual_tokens"}
    assert m["totals"] == {
        "shards": 3,
        "samples": 13,
        "bytes": sum(s["bytes"] for s in m["shards"]),
        "text_tokens": 39,
        "visual_tokens": 13 * 128,
    }
    assert m["funnel"][-1] == {"step": "write", "in": 13, "out": 13, "dropped": {}}
    assert m["warnings"] == ["model clip uses random-init weights"]
    assert m["models"][0]["arch"] == "ViT-B-32"
    assert m["dead_letters"] == 1
    assert validate_manifest(m) == []


def test_build_manifest_defaults_and_extra():
    m = build_manifest(
        dataset="empty",
        config={},
        models=[{"name": "clip", "role": "score", "weights": "/w"}],
        shards=[],
        funnel=build_funnel(["read"], 2, {("read", "bad"): 2}),
        dead_letters=2,
        package_version="0.1.0",
        extra={"stages": ["read"]},
    )
    created = datetime.datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))
    assert abs(datetime.datetime.now(datetime.timezone.utc) - created) < datetime.timedelta(minutes=1)
    assert m["extra"] == {"stages": ["read"]}
    assert m["warnings"] == []
    assert m["totals"]["shards"] == 0


def test_build_manifest_refuses_a_funnel_that_disagrees_with_the_shards(tmp_path):
    with open(tmp_path / "a.tar", "wb") as fileobj:
        info = write_shard(samples_for(0, 13), fileobj, "a.tar")
    with pytest.raises(ValueError, match=r"last funnel step's out \(12\) != totals.samples \(13\)"):
        build_manifest(
            dataset="pairs",
            config=CONFIG,
            models=[],
            shards=[info],
            funnel=build_funnel(["read"], 12, {}),
            dead_letters=0,
            package_version="0.1.0",
        )


def _set(path, value):
    def mutate(m):
        *parents, last = path
        target = m
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _delete(key):
    return lambda m: m.pop(key)


MUTATIONS = {
    "missing key": (_delete("funnel"), "missing keys: funnel"),
    "unknown version": (_set(["format_version"], 2), "unknown format_version 2"),
    "config edited": (_set(["config", "shard", "max_samples"], 6), "config_sha256"),
    "totals samples": (_set(["totals", "samples"], 14), "totals.samples is 14 but the shards add up to 13"),
    "totals bytes": (_set(["totals", "bytes"], 1), "totals.bytes is 1"),
    "totals shards": (_set(["totals", "shards"], 4), "totals.shards is 4"),
    "funnel step arithmetic": (_set(["funnel", 1, "out"], 8), "funnel step 'filter': in (16) != out (8) + dropped (3)"),
    "funnel chain": (_set(["funnel", 2, "in"], 12), "in (12) != previous step's out (13)"),
    "funnel last out": (
        lambda m: m["funnel"][-1].update({"in": 12, "out": 12}) or m["funnel"][-2].update({"out": 12, "in": 15}),
        "last funnel step's out (12) != totals.samples (13)",
    ),
    "empty funnel": (_set(["funnel"], []), "funnel is empty"),
    "negative dropped": (_set(["funnel", 0, "dropped", "unreadable"], -1), "dropped must map reasons"),
    "bad sha": (_set(["shards", 0, "sha256"], "xyz"), "sha256 is not 64 lowercase hex"),
    "bad count": (_set(["shards", 1, "samples"], "5"), "samples must be a non-negative integer"),
    "unsorted shards": (lambda m: m["shards"].reverse(), "not sorted by path"),
    "duplicate shard": (lambda m: m["shards"].append(copy.deepcopy(m["shards"][-1])), "shard paths repeat"),
    "model lacks weights": (lambda m: m["models"][1].pop("weights"), "models[1] lacks non-empty string weights"),
    "warning stripped": (_set(["warnings"], []), "warnings lack 'model clip uses random-init weights'"),
    "bad timestamp": (_set(["created_at"], "yesterday"), "created_at"),
    "non-utc timestamp": (_set(["created_at"], "2024-05-01T12:00:00+02:00"), "created_at"),
    "dead letters": (_set(["dead_letters"], -3), "dead_letters must be"),
    "shards not a list": (_set(["shards"], {}), "shards must be a list"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_validate_catches_each_problem(good_manifest, name):
    mutate, expected = MUTATIONS[name]
    broken = copy.deepcopy(good_manifest)
    mutate(broken)
    problems = validate_manifest(broken)
    assert any(expected in p for p in problems), problems


def test_validate_survives_garbage():
    assert validate_manifest([]) == ["manifest is not a JSON object"]
    problems = validate_manifest({"shards": [None, {}], "funnel": [None, {"step": 3}], "totals": 5, "models": [1]})
    assert any("missing keys" in p for p in problems)
    assert any("shards[0] is not a JSON object" in p for p in problems)
    assert any("shards[1] has no path" in p for p in problems)
    assert any("totals must be a JSON object" in p for p in problems)
    assert any("models[0] is not a JSON object" in p for p in problems)


def test_dump_and_load_round_trip(tmp_path, good_manifest):
    data = dump_manifest(good_manifest)
    assert data.endswith(b"}\n")
    assert data == (json.dumps(good_manifest, indent=2, sort_keys=True) + "\n").encode()
    (tmp_path / "m.json").write_bytes(data)
    assert load_manifest(str(tmp_path / "m.json")) == good_manifest
    (tmp_path / "list.json").write_bytes(b"[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_manifest(str(tmp_path / "list.json"))


@pytest.mark.parametrize(
    "manifest_path, shard, expected",
    [
        ("gs://bucket/x/manifest.json", "shards/a.tar", "gs://bucket/x/shards/a.tar"),
        ("s3://bucket/manifest.json", "./shards/a.tar", "s3://bucket/shards/a.tar"),
        ("file:///data/ds/manifest.json", "shards/a.tar", "file:///data/ds/shards/a.tar"),
        ("/data/ds/manifest.json", "shards/a.tar", "/data/ds/shards/a.tar"),
        ("manifest.json", "shards/a.tar", "shards/a.tar"),
        ("gs://bucket/x/manifest.json", "gs://other/a.tar", "gs://other/a.tar"),
        ("/data/ds/manifest.json", "/elsewhere/a.tar", "/elsewhere/a.tar"),
    ],
)
def test_resolve_path(manifest_path, shard, expected):
    assert resolve_path(manifest_path, shard) == expected


def test_default_opener_reads_paths_and_urls(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"abc")
    for path in (str(tmp_path / "f.bin"), (tmp_path / "f.bin").as_uri()):
        with default_opener(path) as fileobj:
            assert fileobj.read() == b"abc"
    with fsspec.open("memory://opener-test/f.bin", "wb") as fileobj:
        fileobj.write(b"xyz")
    with default_opener("memory://opener-test/f.bin") as fileobj:
        assert fileobj.read() == b"xyz"


def test_verify_passes_on_written_shards(tmp_path, good_manifest):
    assert verify_manifest(str(tmp_path / "manifest.json")) == []


def test_verify_through_urls_and_fsspec():
    write_dataset("memory://verify-test/ds")
    assert verify_manifest("memory://verify-test/ds/manifest.json") == []
    fsspec.filesystem("memory").rm("memory://verify-test/ds/shards/pairs-00000-00001.tar")
    problems = verify_manifest("memory://verify-test/ds/manifest.json")
    assert len(problems) == 1 and "shard shards/pairs-00000-00001.tar: cannot open" in problems[0]


def test_verify_reports_a_flipped_byte(tmp_path, good_manifest):
    shard = tmp_path / "shards/pairs-00000-00001.tar"
    data = bytearray(shard.read_bytes())
    data[1024] ^= 0xFF  # first byte of p1-000.txt's data (p1-000.bin is empty: two headers precede it)
    shard.write_bytes(bytes(data))
    problems = verify_manifest(str(tmp_path / "manifest.json"))
    digest = hashlib.sha256(data).hexdigest()
    assert problems == [f"shard shards/pairs-00000-00001.tar: sha256 {digest} does not match the manifest"]


def test_verify_reports_a_truncated_shard(tmp_path, good_manifest):
    shard = tmp_path / "shards/pairs-00000-00000.tar"
    shard.write_bytes(shard.read_bytes()[:1500])
    problems = verify_manifest(str(tmp_path / "manifest.json"))
    assert all(p.startswith("shard shards/pairs-00000-00000.tar: ") for p in problems)
    assert any("unreadable tar" in p for p in problems)
    assert any("1500 bytes but the manifest says" in p for p in problems)
    assert any("sha256" in p for p in problems)


def test_verify_reports_a_missing_shard_and_still_checks_the_others(tmp_path, good_manifest):
    (tmp_path / "shards/pairs-00000-00002.tar").unlink()
    first = tmp_path / "shards/pairs-00000-00000.tar"
    first.write_bytes(first.read_bytes() + b"\0" * 512)
    problems = verify_manifest(str(tmp_path / "manifest.json"))
    assert len(problems) == 3
    assert "shard shards/pairs-00000-00002.tar: cannot open" in problems[2]
    assert all("pairs-00000-00000.tar" in p for p in problems[:2])


def test_verify_counts_samples(tmp_path):
    infos = []
    with open(tmp_path / "a.tar", "wb") as fileobj:
        infos.append(dataclasses.replace(write_shard(samples_for(0, 4), fileobj, "a.tar"), samples=5))
    manifest = build_manifest(
        dataset="d",
        config={},
        models=[],
        shards=infos,
        funnel=build_funnel(["write"], 5, {}),
        dead_letters=0,
        package_version="0.1.0",
    )
    (tmp_path / "manifest.json").write_bytes(dump_manifest(manifest))
    assert verify_manifest(str(tmp_path / "manifest.json")) == ["shard a.tar: 4 samples but the manifest says 5"]


def test_verify_reports_an_unreadable_or_inconsistent_manifest(tmp_path, good_manifest):
    assert "cannot read manifest" in verify_manifest(str(tmp_path / "nope.json"))[0]
    broken = copy.deepcopy(good_manifest)
    broken["totals"]["samples"] = 99
    (tmp_path / "manifest.json").write_bytes(dump_manifest(broken))
    problems = verify_manifest(str(tmp_path / "manifest.json"))
    assert any("totals.samples is 99" in p for p in problems)


def test_packed_datasets_count_records_in_the_funnel():
    from manifests.manifest import build_funnel, build_manifest, validate_manifest
    from manifests.shards import ShardInfo

    shard = ShardInfo(path="shards/t-00000-00000.tar", sha256="0" * 64, bytes=1024, samples=2,
                      text_tokens=100, visual_tokens=0)
    funnel = build_funnel(["read", "pack"], 5, {("read", "bad"): 1})
    manifest = build_manifest(dataset="t", config={}, models=[], shards=[shard], funnel=funnel,
                              dead_letters=1, package_version="0", packed_records=4)
    assert manifest["packed_records"] == 4 and validate_manifest(manifest) == []
    manifest["packed_records"] = 3
    assert any("packed_records" in p for p in validate_manifest(manifest))
    with pytest.raises(ValueError):
        build_manifest(dataset="t", config={}, models=[], shards=[shard], funnel=funnel,
                       dead_letters=1, package_version="0")
