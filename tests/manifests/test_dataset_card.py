"""The dataset card: every sample's schema, declared so that Hugging Face `datasets` loads the shards whole."""

import functools
import io
import json

import pytest
from datasets import Features, load_dataset
from PIL import Image

from manifests.dataset_card import MIXED, dataset_card, hf_features, json_schema, sample_schema, unify
from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.samples import pack_images
from manifests.shards import Sample, shard_name, write_shard
from shard_samples import hugging_face_rows


def jpeg(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_schemas_widen_to_hold_every_sample():
    assert json_schema({"a": None, "b": [], "c": 1}) == {"struct": {"a": "null", "b": {"list": "null"}, "c": "int64"}}
    later = json_schema({"a": "x", "b": ["r"], "c": 2.5, "d": {"e": True}})
    assert unify(json_schema({"a": None, "b": [], "c": 1}), later) == {
        "struct": {"a": "string", "b": {"list": "string"}, "c": "float64", "d": {"struct": {"e": "bool"}}}}
    assert unify("string", {"struct": {}}) == MIXED and unify("bool", "int64") == MIXED
    assert json_schema([{"x": 1}, {"y": "z"}]) == {"list": {"struct": {"x": "int64", "y": "string"}}}


def test_features_are_what_datasets_reads_back_and_mixed_keys_are_named():
    schema = unify(
        sample_schema(Sample("a", {"jpg": b"", "images.mp": b"", "txt": b"", "json": b'{"n": 1, "m": [[1.5]]}'})),
        sample_schema(Sample("b", {"json": b'{"n": "one", "s": [{"k": null}], "e": {}}'})),
    )
    features, left_out = hf_features(schema)
    assert left_out == ["json.n"]
    assert Features._from_yaml_list(features) == Features._from_yaml_list(Features._from_yaml_list(features)._to_yaml_list())
    names = {entry["name"]: entry for entry in features}
    assert names["jpg"] == {"name": "jpg", "dtype": "image"} and names["images.mp"]["list"] == "image"
    assert {entry["name"]: entry.get("struct") for entry in names["json"]["struct"]} == {"m": None, "s": None, "e": []}, \
        "the mixed n left out, the always-empty e declared empty"


def write_dataset(root, samples):
    (root / "shards").mkdir(parents=True)
    path = shard_name("card", 0, 0)
    with open(root / path, "wb") as handle:
        info = write_shard(samples, handle, path)
    manifest = build_manifest(dataset="card", config={}, models=[], shards=[info],
                              funnel=build_funnel(["read"], len(samples), {}), dead_letters=0, package_version="0")
    (root / "manifest.json").write_bytes(dump_manifest(manifest))
    schema = functools.reduce(unify, map(sample_schema, samples), "null")
    (root / "README.md").write_text(dataset_card(manifest, schema))


def test_samples_whose_json_differs_load_whole_through_the_card_only(tmp_path):
    """Five plain samples, then ones with a new key, a value that was null, a list that was empty."""
    def info(i):
        more = {"note": "late", "failures": ["timeout"], "score": 0.5} if i >= 5 else {"failures": [], "score": None}
        return {"id": i, "meta": {"alt": f"alt {i}", **({"extra": {"w": i}} if i == 7 else {})}, **more}

    samples = [
        Sample(f"s{i:02d}", {"jpg": jpeg((30 * i, 0, 0)), "images.mp": pack_images([jpeg((0, 9 * i, 0))] * (i % 3)),
                             "txt": f"text {i}".encode(), "json": json.dumps(info(i)).encode()})
        for i in range(9)
    ]
    write_dataset(tmp_path / "out", samples)
    with pytest.raises(Exception):  # datasets typed "failures" and "score" as null from the first five
        list(load_dataset("webdataset", data_files=str(tmp_path / "out" / "shards" / "*.tar"), split="train",
                          cache_dir=str(tmp_path / "files-cache")))
    rows = hugging_face_rows(tmp_path / "out", tmp_path / "card-cache")  # checks every json value came back
    assert rows[7]["json"]["meta"]["extra"] == {"w": 7} and rows[6]["json"]["failures"] == ["timeout"]
    assert [len(row["images.mp"]) for row in rows] == [i % 3 for i in range(9)]
    assert rows[8]["jpg"].getpixel((2, 2))[0] > 200 and rows[8]["txt"] == "text 8"
