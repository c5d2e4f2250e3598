"""End to end: `curate longcontext` over generated caption and document datasets and routed long ones.

Every image is one solid colour that its description names, so decoding a sequence's images
shows whether the i-th image still goes with the i-th description of the target.
"""

import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.config import load_config
from curation.ids import sha256_hex
from curation.records import CaptionPair, DocumentPage, ImageData
from curation.tokens import TextTokenizer
from manifests.manifest import build_funnel, build_manifest, dump_manifest, load_manifest, validate_manifest
from manifests.reader import mixture_dataset
from manifests.samples import caption_pair_sample, document_page_sample, pack_images, unpack_images
from manifests.shards import Sample, shard_name, write_shard
from pipelines import longcontext
from pipelines.cli import main
from shard_samples import read_samples

DIRECT = ["--runner=DirectRunner"]
MAX_TOKENS = 1000
COLOURS = {
    "red": (220, 20, 20), "green": (20, 190, 20), "blue": (20, 20, 220), "yellow": (235, 235, 20),
    "cyan": (20, 225, 225), "magenta": (225, 20, 225), "orange": (245, 140, 0), "purple": (110, 0, 160),
    "white": (250, 250, 250), "black": (5, 5, 5), "gray": (128, 128, 128), "brown": (110, 60, 15),
    "pink": (255, 160, 200), "navy": (0, 0, 100), "olive": (110, 110, 0), "teal": (0, 120, 120),
}
NAMES = list(COLOURS)
TOKENIZER = TextTokenizer.load("clip-bpe")


def encoded(colour, size, fmt):
    buffer = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buffer, format=fmt)
    return buffer.getvalue()


def colour_of(data):
    r, g, b = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.BILINEAR).getpixel((0, 0))
    return min(COLOURS, key=lambda name: sum((x - y) ** 2 for x, y in zip(COLOURS[name], (r, g, b))))


def image_data(colour, size, fmt):
    data = encoded(colour, size, fmt)
    return ImageData(sha256=sha256_hex(data), phash="0" * 16, width=size[0], height=size[1],
                     format=fmt.lower(), data=data)


def write_dataset(folder, name, samples, per_shard=4):
    """``folder`` as a dataset: its samples in shards of ``per_shard`` and its manifest."""
    (folder / "shards").mkdir(parents=True)
    infos = []
    for index in range(0, len(samples), per_shard):
        path = shard_name(name, 0, index // per_shard)
        with open(folder / path, "wb") as handle:
            infos.append(write_shard(samples[index:index + per_shard], handle, path))
    funnel = build_funnel(["read"], len(samples), {})
    manifest = build_manifest(dataset=name, config={}, models=[], shards=infos, funnel=funnel, dead_letters=0,
                              package_version="0.1.0")
    (folder / "manifest.json").write_bytes(dump_manifest(manifest))
    return folder / "manifest.json"


def caption_samples():
    """Ten caption pairs, one of them a tiny image, and one sample without an image."""
    samples = []
    for i, colour in enumerate(NAMES[:10]):
        size = (16, 16) if i == 3 else (40, 30)
        pair = CaptionPair(id=f"cap{i:02d}", source="laion", url=f"http://127.0.0.1/{i}.jpg",
                           text=f"a photo of a plain {colour} square, number {i}",
                           image=image_data(colour, size, "JPEG"))
        samples.append(caption_pair_sample(pair, TOKENIZER))
    samples.append(Sample(key="textonly", fields={"txt": b"words without a picture", "json": b"{}"}, text_tokens=4))
    return samples


def document_samples():
    """Six pages, and one page too large for the sequence budget (an ultra-resolution image)."""
    samples = []
    for i, colour in enumerate(NAMES[10:] + ["red"]):
        size = (1500, 1500) if i == 6 else (60, 80)
        page = DocumentPage(id=f"page{i:02d}", source="scan.pdf", image=image_data(colour, size, "PNG"),
                            transcript=f"Page {i}. The whole page is {colour}.", meta={"file": "scan.pdf", "page": i})
        samples.append(document_page_sample(page, TOKENIZER))
    return samples


def long_samples(name, count):
    """Samples as the video and documents pipelines route to long/: several images in one field."""
    return [
        Sample(key=f"{name}{i}", fields={
            "images.mp": pack_images([encoded(colour, (32, 32), "JPEG") for colour in NAMES[i:i + 3]]),
            "txt": f"{name} {i}".encode(), "json": json.dumps({"id": f"{name}{i}"}).encode(),
        }, text_tokens=3, visual_tokens=384)
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("longcontext-sources")
    captions = write_dataset(root / "captions", "captions", caption_samples())
    copy = write_dataset(root / "captions-copy", "captions", caption_samples())
    documents = write_dataset(root / "documents", "documents", document_samples())
    routed = write_dataset(root / "documents" / "long", "documents_long", long_samples("longdoc", 2))
    video = write_dataset(root / "video" / "long", "video_long", long_samples("longvideo", 3), per_shard=2)
    return {"captions": captions, "copy": copy, "documents": documents, "routed": routed, "video": video}


def config(sources, *overrides):
    return load_config(longcontext.LongContextConfig, overrides=[
        f"sequences.max_tokens={MAX_TOKENS}", f"long=[{json.dumps(str(sources['video']))}]", *overrides,
    ])


@pytest.fixture(scope="module")
def runs(sources, tmp_path_factory):
    """The CLI run, the same again through the module's run, and a run with repeats and an image filter."""
    inputs = [str(sources[name]) for name in ("captions", "copy", "documents")]
    cli = tmp_path_factory.mktemp("cli")
    code = main(["longcontext", "--input", *inputs, "--output", str(cli), "--max-tokens", str(MAX_TOKENS),
                 "--set", f"long=[{json.dumps(str(sources['video']))}]", "--quiet", "--no-report", *DIRECT])
    assert code == 0
    again = tmp_path_factory.mktemp("again")
    longcontext.run(",".join(inputs), str(again), config(sources), DIRECT)
    repeated = tmp_path_factory.mktemp("repeated")
    longcontext.run(",".join(inputs), str(repeated), config(sources), DIRECT, stop_after="samples")
    longcontext.run(",".join(inputs), str(repeated), config(
        sources, "sequences.repeats=2", "sequences.seed=3", "filters.image_quality.min_side=20"), DIRECT,
        resume_from="samples")
    return {"cli": cli, "again": again, "repeated": repeated}


def sequences(out: Path):
    return [(info, files) for info, files in read_samples(out)]


def test_no_sequence_exceeds_the_budget_and_the_manifest_adds_up(runs):
    for out in runs.values():
        manifest = load_manifest(str(out / "manifest.json"))
        assert validate_manifest(manifest) == []
        found = sequences(out)
        assert found and len(found) == manifest["totals"]["samples"]
        for info, _ in found:
            tokens = info["tokens"]
            assert tokens["total"] == tokens["visual"] + tokens["text"] <= MAX_TOKENS
            assert tokens["visual"] == sum(s["visual_tokens"] for s in info["segments"])
            assert tokens["text"] == sum(s["text_tokens"] + 1 for s in info["segments"])
        assert manifest["totals"]["visual_tokens"] == sum(info["tokens"]["visual"] for info, _ in found)
        assert manifest["totals"]["text_tokens"] == sum(info["tokens"]["text"] for info, _ in found)


def test_tokens_are_counted_as_the_source_samples_were(runs):
    pages = {s.key: s for s in document_samples()} | {s.key: s for s in caption_samples()}
    for info, _ in sequences(runs["cli"]):
        for segment in info["segments"]:
            source = pages[segment["id"]]
            assert segment["visual_tokens"] == source.visual_tokens
            assert segment["text_tokens"] == source.text_tokens  # no QA on these pages: the transcript alone


def test_every_source_sample_is_used_once_and_every_other_input_is_rejected_for_its_reason(runs):
    manifest = load_manifest(str(runs["cli"] / "manifest.json"))
    uses = Counter((s["source"], s["id"]) for info, _ in sequences(runs["cli"]) for s in info["segments"])
    expected = {("captions", f"cap{i:02d}") for i in range(10)} | {("documents", f"page{i:02d}") for i in range(6)}
    assert uses == {key: 1 for key in expected}
    assert all(s["use"] == 0 for info, _ in sequences(runs["cli"]) for s in info["segments"])
    assert [row["step"] for row in manifest["funnel"]] == ["read", "dedup", "budget"]
    assert manifest["funnel"][0]["in"] == 11 + 11 + 7
    rejects = Counter((r["step"], r["reason"], r["id"]) for r in pq.read_table(runs["cli"] / "rejects").to_pylist())
    assert rejects[("read", "not_an_image_with_text", "textonly")] == 2
    assert sum(n for (step, reason, _), n in rejects.items() if reason == "duplicate") == 10
    assert rejects[("budget", "over_budget", "page06")] == 1
    assert sum(rejects.values()) == 13
    assert manifest["packed_records"] == manifest["funnel"][-1]["out"] == 16


def test_the_ith_image_goes_with_the_ith_description(runs):
    for out in runs.values():
        assert max(len(info["segments"]) for info, _ in sequences(out)) > 3
        for info, files in sequences(out):
            images = unpack_images(files["images.mp"])
            target = files["txt"].decode().split("\n\n")
            assert len(images) == len(target) == len(info["segments"])
            for index, (image, text, segment) in enumerate(zip(images, target, info["segments"])):
                assert segment["image"] == index and segment["text"] == text
                assert colour_of(image) in re.findall(r"[a-z]+", text), (colour_of(image), text)


def test_runs_are_deterministic_for_a_seed(runs):
    def shards(out):
        return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}

    assert shards(runs["cli"]) and shards(runs["cli"]) == shards(runs["again"])
    assert shards(runs["repeated"]) != shards(runs["cli"])


def test_repeats_on_a_run_resumed_from_the_samples_stage_use_every_sample_that_many_times(runs, sources):
    found = sequences(runs["repeated"])
    uses = Counter((s["source"], s["id"], s["use"]) for info, _ in found for s in info["segments"])
    kept = {("captions", f"cap{i:02d}") for i in range(10) if i != 3}
    kept |= {("documents", f"page{i:02d}") for i in range(6)}
    assert uses == {(*key, use): 1 for key in kept for use in (0, 1)}
    for info, _ in found:
        assert len({s["id"] for s in info["segments"]}) == len(info["segments"])
    manifest = load_manifest(str(runs["repeated"] / "manifest.json"))
    assert [row["step"] for row in manifest["funnel"]] == ["read", "image_quality", "budget"]
    assert manifest["funnel"][0]["in"] == 17, "the deduplicated samples, read back from the stage"
    assert manifest["funnel"][1]["dropped"] == {"small_image": 1}
    assert manifest["packed_records"] == len(kept)
    assert {row["path"] for row in manifest["extra"]["lineage"]} == {str(path) for path in sources.values()}


def test_inputs_are_checked_before_a_run_resumed_or_not(runs, tmp_path, capsys):
    assert main(["longcontext", "--output", str(tmp_path), "--resume-from", "samples", *DIRECT]) == 2
    assert "needs --input, also with --resume-from" in capsys.readouterr().err
    assert main(["longcontext", "--input", str(tmp_path / "none*.json"), "--output", str(tmp_path), *DIRECT]) == 2
    assert "no such manifest" in capsys.readouterr().err
    assert main(["longcontext", "--input", str(runs["cli"] / "stage.json"), "--output", str(tmp_path), *DIRECT]) == 2
    assert "is a stage manifest" in capsys.readouterr().err


def test_lineage_names_every_source_manifest_with_its_sha256(runs, sources):
    lineage = load_manifest(str(runs["cli"] / "manifest.json"))["extra"]["lineage"]
    expected = {
        (str(sources[name]), hashlib.sha256(sources[name].read_bytes()).hexdigest(), role)
        for name, role in [("captions", "input"), ("copy", "input"), ("documents", "input"), ("routed", "long"),
                           ("video", "long")]
    }
    assert {(row["path"], row["sha256"], row["role"]) for row in lineage} == expected
    assert len(lineage) == 5


def test_the_stage_holds_the_synthetic_and_the_routed_long_datasets_and_reads_whole(runs, sources):
    stage_path = runs["cli"] / "stage.json"
    stage = json.loads(stage_path.read_text())
    manifest = load_manifest(str(runs["cli"] / "manifest.json"))
    assert stage["kind"] == "stage" and stage["format_version"] == 1 and stage["warnings"] == []
    assert [(s["name"], s["samples_per_epoch"], s["repeat_factor"]) for s in stage["sources"]] == [
        ("longcontext", manifest["totals"]["samples"], 1.0), ("documents_long", 2, 1.0), ("video_long", 3, 1.0),
    ]
    assert stage["sources"][0]["manifest"] == "manifest.json"
    assert stage["sources"][1]["manifest_sha256"] == hashlib.sha256(sources["routed"].read_bytes()).hexdigest()
    read = list(mixture_dataset(str(stage_path)))
    assert Counter(sample["__source__"] for sample in read) == {
        "longcontext": manifest["totals"]["samples"], "documents_long": 2, "video_long": 3,
    }
    for sample in read:
        assert len(sample["images.mp"]) >= 2 and all(isinstance(image, Image.Image) for image in sample["images.mp"])


def test_hugging_face_datasets_loads_every_sequence_with_its_images(runs, tmp_path):
    import datasets

    out = runs["repeated"]
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    loaded = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train",
                                   cache_dir=str(tmp_path / "hf"))
    manifest = load_manifest(str(out / "manifest.json"))
    assert len(loaded) == manifest["totals"]["samples"] > 1
    for row in loaded:  # datasets decodes the msgpack field into the list of encoded images
        texts = [segment["text"] for segment in row["json"]["segments"]]
        assert row["txt"].split("\n\n") == texts
        assert [colour_of(image) in re.findall(r"[a-z]+", text) for image, text in zip(row["images.mp"], texts)] == (
            [True] * len(texts)
        )
        assert len(row["images.mp"]) == len(texts)


def test_a_damaged_shard_keeps_the_samples_before_the_damage_and_becomes_one_dead_letter(tmp_path):
    samples = caption_samples()[:3]
    samples[1].fields["jpg"] = b"\xff\xd8 not a jpeg"
    with open(tmp_path / "whole.tar", "wb") as handle:
        write_shard(samples, handle, "whole.tar")
    whole = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[: whole.index(b"cap02.jpg") + 600])  # inside the third image
    read = list(longcontext.read_shard(("captions", str(tmp_path / "cut.tar"))))
    assert [(r.id, type(r).__name__) for r in read[:2]] == [("cap00", "CaptionPair"), ("cap01", "Reject")]
    assert (read[1].reason, read[1].dead_letter) == ("undecodable_image", True)
    assert len(read) == 3 and (read[2].reason, read[2].dead_letter) == ("unreadable_shard", True)
    assert read[0].text == "a photo of a plain red square, number 0" and read[0].image.width == 40
