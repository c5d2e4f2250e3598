"""End to end: `curate video` on videos the tests write, through a loopback endpoint and a tiny local VLM."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.config import ConfigError, load_config
from curation.tokens import TextTokenizer
from manifests.manifest import load_manifest, verify_manifest
from manifests.reader import webdataset_from_manifest
from manifests.samples import unpack_images
from pipelines import video
from pipelines.cli import main
from sampledata.llm_server import LLMServer
from sampledata.videos import SCENE_VIDEOS, write_video_inputs
from shard_samples import MULTIPROCESS, PORTABLE, hugging_face_rows, read_samples
from synth.qa import grounding

MAX_TOKENS = 1500
CONFIG = f"""
dataset: video-test
captions:
  window: 2
budget:
  max_tokens: {MAX_TOKENS}
shards:
  max_samples: 2
"""
COLOUR_NAMES = {(200, 30, 30): "red", (30, 170, 60): "green", (30, 60, 220): "blue", (230, 220, 50): "yellow",
                (140, 50, 170): "purple", (50, 210, 210): "cyan"}


def videos_by_file(out: Path) -> dict[str, tuple[dict, dict[str, bytes]]]:
    return {info["file"]: (info, files) for info, files in read_samples(out)}


def endpoint_config(server: LLMServer, text: str = CONFIG):
    return load_config(video.VideoConfig, text=text + f"""
generator:
  backend: endpoint
  endpoint: {server.base_url}
  model: rule-based-test-model
  concurrency: 4
""")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("video-input")
    return directory, write_video_inputs(str(directory))


@pytest.fixture(scope="module")
def server():
    with LLMServer() as running:
        yield running


@pytest.fixture(scope="module")
def direct_run(inputs, server, tmp_path_factory):
    out = tmp_path_factory.mktemp("video-direct")
    video.run(str(inputs[0] / "*.mp4"), str(out), endpoint_config(server), ["--runner=DirectRunner"])
    return out


def test_videos_become_samples_and_bad_files_dead_letters(direct_run, inputs):
    _, cases = inputs
    manifest = load_manifest(str(direct_run / "manifest.json"))
    assert verify_manifest(str(direct_run / "manifest.json")) == []
    funnel = {row["step"]: row for row in manifest["funnel"]}
    assert funnel["read"]["in"] == len(cases)
    assert funnel["decode"]["dead_letters"] == {"corrupt_video": 3, "no_video_stream": 1}
    assert funnel["video_dedup"]["dropped"] == {"duplicate": 1}
    assert funnel["route"]["dropped"] == {"routed_long": 1}
    rejects = {r["source"]: r for r in pq.read_table(direct_run / "rejects").to_pylist()}
    for case in cases:
        if case.expect in ("corrupt_video", "no_video_stream"):
            assert rejects[case.name]["reason"] == case.expect and rejects[case.name]["dead_letter"]
            assert rejects[case.name]["detail"], "a dead letter says what the decoder said"
    duplicate = rejects.get("harbour-copy.mp4") or rejects["harbour.mp4"]
    assert duplicate["reason"] == "duplicate"
    assert rejects["lecture.mp4"]["reason"] == "routed_long" and not rejects["lecture.mp4"]["dead_letter"]
    assert sorted(videos_by_file(direct_run)) in (
        ["harbour.mp4", "market.mp4", "phone.mp4"], ["harbour-copy.mp4", "market.mp4", "phone.mp4"])
    frames = {row["step"]: row for row in manifest["extra"]["frame_funnel"]}
    assert frames["frame_dedup"]["dropped"]["near_duplicate_frame"] > 0, "static scenes come down to their keyframes"


def test_a_sample_holds_its_scenes_frames_descriptions_summary_and_qa(direct_run):
    tokenizer = TextTokenizer.load("clip-bpe")
    for name, (info, files) in videos_by_file(direct_run).items():
        scenes = SCENE_VIDEOS.get(name.replace("-copy", ""), ((2.0, (50, 210, 210)),))
        assert len(info["scenes"]) == len(scenes)
        assert set(files) == {"images.mp", "txt"}, "one images field, whatever the video holds"
        frames = unpack_images(files["images.mp"])
        assert len(frames) == len(info["frames"])
        assert info["duration"] == pytest.approx(sum(seconds for seconds, _ in scenes))
        assert info["fps"] == 10 and info["codec"] == "mpeg4"
        assert [frame["scene"] for frame in info["frames"]] == list(range(len(scenes)))  # one keyframe per scene
        for frame, (_, colour) in zip(info["frames"], scenes):
            start = info["scenes"][frame["scene"]]["start"]
            assert start <= frame["t"] < info["scenes"][frame["scene"]]["end"]
            assert COLOUR_NAMES[colour] in frame["caption"], "the endpoint saw this frame"
            assert Image.open(io.BytesIO(frames[frame["image"]])).format == "JPEG"
        descriptions = files["txt"].decode()
        assert descriptions.count("\n") == len(info["frames"]) - 1 and descriptions.startswith("[")
        assert info["summary"].startswith("The video shows")
        assert info["qa"] and all(grounding(pair["answer"], descriptions) >= 0.8 for pair in info["qa"])
        tokens = info["tokens"]
        assert tokens["total"] == tokens["visual"] + tokens["text"] <= MAX_TOKENS
        qa = "\n".join(f"{p['question']}\n{p['answer']}" for p in info["qa"])
        text = sum(tokenizer.count(line) for line in descriptions.splitlines()) + tokenizer.count(
            "\n".join(part for part in (info["summary"], qa) if part))
        assert tokens["text"] == text and tokens["visual"] == 128 * len(info["frames"])


def test_the_phone_video_comes_out_upright(direct_run):
    info, files = videos_by_file(direct_run)["phone.mp4"]
    assert info["rotation"] == 90 and (info["width"], info["height"]) == (96, 160)
    frame = np.asarray(Image.open(io.BytesIO(unpack_images(files["images.mp"])[0])).convert("L"), dtype=float)
    ys, xs = np.nonzero(frame > 200)
    assert frame.shape == (160, 96)
    assert abs(xs.mean() / 96 - 0.2) < 0.06 and abs(ys.mean() / 160 - 0.15) < 0.06


def test_a_video_over_the_budget_goes_whole_to_the_long_stage(direct_run):
    long_manifest = load_manifest(str(direct_run / "long" / "manifest.json"))
    assert verify_manifest(str(direct_run / "long" / "manifest.json")) == []
    [(info, files)] = read_samples(direct_run / "long")
    assert info["file"] == "lecture.mp4" and info["tokens"]["total"] > MAX_TOKENS
    assert len(info["scenes"]) == 15 and len(unpack_images(files["images.mp"])) == len(info["frames"]) == 15
    assert long_manifest["dataset"] == "video-test_long" and long_manifest["funnel"][0]["out"] == 1
    assert all(info["tokens"]["total"] <= MAX_TOKENS for info, _ in read_samples(direct_run))


def test_the_manifest_names_the_models_and_the_endpoint_got_several_images_per_request(direct_run, server):
    manifest = load_manifest(str(direct_run / "manifest.json"))
    models = {entry["role"]: entry for entry in manifest["models"]}
    captioner = models["frame_captioner"]
    assert captioner["prompt"] == "video_frame_caption_v1" and captioner["window"] == 2
    assert models["summary_qa_writer"]["prompt"] == "video_summary_v1+video_qa_v1"
    assert models["summary_qa_writer"]["note"].startswith("its output is in 3 of the 3 samples")
    assert server.most_images == 2


def test_over_the_budget_a_video_is_thinned_keeping_every_scene(inputs, server, tmp_path):
    config = endpoint_config(server, CONFIG.replace("window: 2", "window: 1") + """
video:
  scenes:
    duplicate_distance: -1
""")
    config = dataclasses.replace(config, budget=dataclasses.replace(config.budget, max_tokens=3500))
    out = tmp_path / "out"
    video.run(str(inputs[0] / "lecture.mp4"), str(out), config, ["--runner=DirectRunner"])
    [(info, _)] = read_samples(out)
    assert info["tokens"]["total"] <= 3500
    assert {frame["scene"] for frame in info["frames"] if frame["keyframe"]} == set(range(15))
    assert 15 < len(info["frames"]) < 64
    thinned = info["meta"]["thinned"]
    assert thinned["plan_budget"] > 0, "frames that could never fit were dropped before they were described"
    assert 15 + sum(thinned.values()) + len(info["frames"]) - 15 == 64
    assert not (out / "long" / "shards").exists() or not list((out / "long" / "shards").glob("*.tar"))
    funnel = {row["step"]: row for row in load_manifest(str(out / "manifest.json"))["funnel"]}
    assert funnel["plan_budget"]["fallback"] == {"thinned": 1}, "the funnel says the video was thinned"


HANGING_CHILD = """
import os, pickle, sys, time
path, settings = pickle.loads(sys.stdin.buffer.read())
if os.path.basename(path) == "hang.mp4":
    time.sleep(60)
from curation.video_decode import decode_video, VideoRejected
try:
    outcome = decode_video(path, settings)
except VideoRejected as rejected:
    outcome = (rejected.reason, rejected.detail)
sys.stdout.buffer.write(pickle.dumps(outcome))
"""


def test_a_hanging_decode_is_a_dead_letter_and_the_other_videos_finish(inputs, server, tmp_path, monkeypatch):
    directory = tmp_path / "in"
    directory.mkdir()
    for name in ("harbour.mp4", "market.mp4"):
        shutil.copy(inputs[0] / name, directory / name)
    shutil.copy(inputs[0] / "phone.mp4", directory / "hang.mp4")
    monkeypatch.setattr("curation.video_decode._child_command", lambda: [sys.executable, "-c", HANGING_CHILD])
    config = endpoint_config(server, CONFIG + "video:\n  timeout_seconds: 8\n")
    out = tmp_path / "out"
    video.run(str(directory / "*.mp4"), str(out), config, ["--runner=DirectRunner"])
    [rejected] = [r for r in pq.read_table(out / "rejects").to_pylist() if r["step"] == "decode"]
    assert (rejected["source"], rejected["reason"], rejected["dead_letter"]) == ("hang.mp4", "decode_timeout", True)
    assert sorted(videos_by_file(out)) == ["harbour.mp4", "market.mp4"]


def test_runners_write_identical_shards(inputs, server, job_service, tmp_path):
    directory = tmp_path / "in"
    directory.mkdir()
    for name in ("harbour.mp4", "market.mp4", "phone.mp4", "noise.mp4"):
        shutil.copy(inputs[0] / name, directory / name)
    config = endpoint_config(server)
    outs = {name: tmp_path / name for name in ("direct", "multi", "portable")}
    video.run(str(directory / "*.mp4"), str(outs["direct"]), config, ["--runner=DirectRunner"])
    video.run(str(directory / "*.mp4"), str(outs["multi"]), config, MULTIPROCESS)
    video.run(str(directory / "*.mp4"), str(outs["portable"]), config, [*PORTABLE, f"--job_endpoint={job_service}"])
    reference = {p.name: p.read_bytes() for p in (outs["direct"] / "shards").glob("*.tar")}
    assert reference
    for name in ("multi", "portable"):
        assert {p.name: p.read_bytes() for p in (outs[name] / "shards").glob("*.tar")} == reference, name


def test_frames_described_by_a_tiny_random_local_vlm_through_the_real_load_path(inputs, tmp_path, monkeypatch):
    from curation.models.hf_generator import TransformersGenerator
    from tiny_models import save_tiny_llava

    model_dir = tmp_path / "tiny-vlm"
    save_tiny_llava(model_dir)
    loads = []
    real_load = TransformersGenerator.load.__func__
    monkeypatch.setattr(TransformersGenerator, "load", classmethod(lambda cls, *a, **k: loads.append(1) or real_load(cls, *a, **k)))
    config = load_config(video.VideoConfig, text=CONFIG.replace("window: 2", "window: 1") + f"""
generator:
  model: {model_dir}
  batch_size: 4
  settings:
    max_new_tokens: 12
budgets:
  steps:
    plan_budget: {{fallback: 1.0}}
    budget: {{fallback: 1.0}}
    summary_qa: {{fallback: 1.0}}
""")
    # random weights: whether their one summary passes the summary checks varies from run to run (it failed
    # in 1 of 2 CI runs and 2 of 6 local ones); this test is about the load path and the frame captions
    video.check_generator_sees_images(config)  # a VLM: allowed
    out = tmp_path / "out"
    video.run(str(inputs[0] / "market.mp4"), str(out), config, ["--runner=DirectRunner"])
    assert loads == [1], "the model loads once per worker, for both model steps"
    [(info, files)] = read_samples(out)
    captions = info["meta"]["captions"]
    assert captions["sees_images"] and captions["model"] == str(model_dir) and captions["window"] == 1
    assert captions["described"] == len(info["frames"]) - captions["failed_windows"]
    assert all(frame["caption"] for frame in info["frames"])
    assert files["txt"].decode().splitlines()[0].startswith(f"[{info['frames'][0]['t']:.1f}s] ")
    manifest = load_manifest(str(out / "manifest.json"))
    captioner = {entry["role"]: entry for entry in manifest["models"]}["frame_captioner"]
    assert captioner["weights"] == f"path:{model_dir}"


def test_a_text_only_generator_is_refused_before_the_run(tmp_path):
    from tiny_models import save_tiny_lm

    save_tiny_lm(tmp_path / "tiny-lm")
    config = load_config(video.VideoConfig, text=f"generator:\n  model: {tmp_path / 'tiny-lm'}\n")
    with pytest.raises(ConfigError, match="text-only"):
        video.check_generator_sees_images(config)
    assert "captions" not in video.recipe(video.VideoConfig()).funnel, "without a generator, frames only"


def test_the_cli_runs_video_and_explains_it(inputs, server, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["video", "--help"])
    assert "--max-tokens" in capsys.readouterr().out
    code = main([
        "video", "--input", str(inputs[0] / "market.mp4"), "--output", str(tmp_path), "--max-tokens", "4000",
        "--generator-endpoint", server.base_url, "--generator-name", "rule-based-test-model", "--quiet",
        "--runner=DirectRunner",
    ])
    assert code == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["budget"]["max_tokens"] == 4000
    assert [info["file"] for info, _ in read_samples(tmp_path)] == ["market.mp4"]


def test_frames_sampled_without_a_generator_resume_into_the_same_samples(inputs, server, tmp_path):
    config = endpoint_config(server)
    frames_only = dataclasses.replace(config, generator=None)
    source = str(inputs[0] / "market.mp4")
    full, staged = tmp_path / "full", tmp_path / "staged"
    video.run(source, str(full), config, ["--runner=DirectRunner"])
    video.run(source, str(staged), frames_only, ["--runner=DirectRunner"], stop_after="frames")
    assert not (staged / "shards").exists() and (staged / "stages" / "frames").is_dir()
    with pytest.raises(ConfigError, match="switched off"):
        video.run(source, str(staged), frames_only, ["--runner=DirectRunner"], stop_after="captions")
    video.run(source, str(staged), config, ["--runner=DirectRunner"], resume_from="frames")
    reference = {p.name: p.read_bytes() for p in (full / "shards").glob("*.tar")}
    assert reference and {p.name: p.read_bytes() for p in (staged / "shards").glob("*.tar")} == reference


def test_hugging_face_datasets_and_the_torch_reader_read_every_video_whole(direct_run, tmp_path):
    for out in (direct_run, direct_run / "long"):
        rows = hugging_face_rows(out, tmp_path / out.name)
        assert {key for row in rows for key in row} == {"images.mp", "txt", "json", "__key__", "__url__"}
        by_key = {row["__key__"]: row for row in rows}
        for sample in webdataset_from_manifest(str(out / "manifest.json")):
            frames, row = sample["images.mp"], by_key[sample["__key__"]]
            assert len(frames) == len(row["images.mp"]) == len(sample["json"]["frames"]) > 0
            assert [image.size for image in row["images.mp"]] == [f.size for f in frames], "the card's list of images"
