"""Decoding videos in a child process: scenes, frames, rotation, and every way a file can fail."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

from curation.video_decode import VideoRejected, VideoSettings, decode_isolated, decode_video, drop_near_duplicates
from curation.scenes import SceneSettings
from sampledata.videos import (
    corrupt_stream, random_bytes, scene_cut_times, scene_frame_counts, truncate, write_audio_only, write_scene_video,
)

SCENES = [(2.0, (200, 30, 30)), (1.5, (30, 200, 30)), (3.0, (30, 30, 200))]
FPS = 10


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("videos") / "scenes.mp4")
    write_scene_video(path, SCENES, fps=FPS, noise=3, marker=(0.25, 0.3))
    return path


def pixels(frame):
    return np.asarray(Image.open(io.BytesIO(frame.image.data)).convert("RGB"), dtype=np.int16)


def test_cuts_are_found_within_one_frame_and_frames_follow_the_fps_cap(scene_video):
    decoded = decode_isolated(scene_video, VideoSettings(scenes=SceneSettings(fps_cap=1.0)))
    cuts = [start for start, _ in decoded.scenes[1:]]
    assert len(cuts) == len(scene_cut_times(SCENES, FPS))
    assert all(abs(found - want) <= 1 / FPS for found, want in zip(cuts, scene_cut_times(SCENES, FPS)))
    total = sum(scene_frame_counts(SCENES, FPS))
    assert decoded.meta["frame_count"] == total and decoded.meta["fps"] == FPS
    assert decoded.meta["duration"] == pytest.approx(total / FPS)
    assert (decoded.meta["width"], decoded.meta["height"], decoded.meta["decoder"]) == (160, 96, "decord")
    # one keyframe per scene plus one frame per second (0 s .. 6 s), none counted twice
    assert sum(f.keyframe for f in decoded.frames) == len(SCENES)
    assert len(decoded.frames) == len(SCENES) + 7
    for frame in decoded.frames:  # each frame shows its scene's colour
        start, end = decoded.scenes[frame.scene]
        assert start <= frame.t < end
        colour = np.array(SCENES[frame.scene][1])
        assert np.abs(np.median(pixels(frame).reshape(-1, 3), axis=0) - colour).max() < 12


def test_near_duplicate_frames_of_a_static_scene_are_dropped(tmp_path):
    path = str(tmp_path / "static.mp4")
    write_scene_video(path, SCENES, fps=FPS, marker=(0.25, 0.3))
    decoded = decode_isolated(path)
    # flat frames of different colours share one pHash: only frames of one scene are compared
    assert len({f.image.phash for f in decoded.frames}) == 1
    kept, dropped = drop_near_duplicates(decoded.frames, distance=6)
    assert sorted(f.scene for f in kept) == [0, 1, 2]  # each static scene comes down to its keyframe
    assert all(f.keyframe for f in kept)
    assert len(dropped) == len(decoded.frames) - 3
    assert all(frame.scene == twin.scene and twin.keyframe for frame, twin in dropped)
    kept_all, none = drop_near_duplicates(decoded.frames, distance=-1)
    assert len(kept_all) == len(decoded.frames) and none == []


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation, decoder):
    path = str(tmp_path / f"phone_{rotation}.mp4")
    write_scene_video(path, [(1.0, (40, 40, 40))], fps=FPS, size=(96, 160), marker=(0.2, 0.15), rotation=rotation)
    decoded = decode_isolated(path, VideoSettings(decoders=(decoder,)))
    assert decoded.meta["rotation"] == rotation and decoded.meta["decoder"] == decoder
    assert (decoded.meta["width"], decoded.meta["height"]) == (96, 160)
    frame = pixels(decoded.frames[0]).mean(axis=2)
    assert frame.shape == (160, 96)
    ys, xs = np.nonzero(frame > 150)  # the white marker
    assert abs(xs.mean() / 96 - 0.2) < 0.05 and abs(ys.mean() / 160 - 0.15) < 0.05


def test_frames_are_resized_into_the_resolution_band(tmp_path):
    path = str(tmp_path / "wide.mp4")
    write_scene_video(path, [(0.5, (90, 90, 200))], fps=FPS, size=(1280, 720))
    medium = decode_isolated(path, VideoSettings(frame_resolution="medium")).frames[0].image
    high = decode_isolated(path, VideoSettings(frame_resolution="high")).frames[0].image
    assert (medium.width, medium.height) == (490, 276)
    assert (high.width, high.height) == (980, 551)


def hostile_files(directory, valid):
    files = {
        "truncated.mp4": lambda p: truncate(valid, p, 0.5),
        "random.mp4": lambda p: random_bytes(p),
        "corrupt_stream.mp4": lambda p: corrupt_stream(valid, p),
        "audio_only.mp4": lambda p: write_audio_only(p),
        "empty.mp4": lambda p: open(p, "wb").close(),
    }
    paths = {}
    for name, make in files.items():
        paths[name] = str(directory / name)
        make(paths[name])
    return paths


def test_broken_files_are_rejected_with_their_reason(tmp_path, scene_video):
    paths = hostile_files(tmp_path, scene_video)
    expected = {"truncated.mp4": "corrupt_video", "random.mp4": "corrupt_video", "corrupt_stream.mp4": "corrupt_video",
                "audio_only.mp4": "no_video_stream", "empty.mp4": "corrupt_video"}
    for name, reason in expected.items():
        with pytest.raises(VideoRejected) as rejected:
            decode_isolated(paths[name])
        assert rejected.value.reason == reason, (name, rejected.value.detail)
        assert rejected.value.detail


def test_a_decode_past_its_time_limit_is_killed(scene_video):
    with pytest.raises(VideoRejected) as rejected:
        decode_isolated(scene_video, VideoSettings(timeout_seconds=0.05))
    assert rejected.value.reason == "decode_timeout"


def test_a_decode_past_its_memory_limit_is_decode_memory(scene_video):
    with pytest.raises(VideoRejected) as rejected:
        decode_isolated(scene_video, VideoSettings(memory_mb=64))
    assert rejected.value.reason == "decode_memory", rejected.value.detail


def test_a_decoder_that_kills_its_process_is_corrupt_video_and_the_caller_goes_on(scene_video, monkeypatch):
    # the child crashes the way decord can (a signal), here by SIGSEGV sent to itself
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr("curation.video_decode._child_command", lambda: [sys.executable, "-c", crash])
    with pytest.raises(VideoRejected) as rejected:
        decode_isolated(scene_video)
    assert rejected.value.reason == "corrupt_video" and "SIGSEGV" in rejected.value.detail
    monkeypatch.undo()
    assert decode_isolated(scene_video).frames  # the next video decodes as before


def test_pyav_decodes_what_decord_is_not_asked_to(scene_video):
    decoded = decode_video(scene_video, VideoSettings(decoders=("pyav",)))
    by_decord = decode_video(scene_video)
    assert decoded.meta["decoder"] == "pyav"
    assert decoded.scenes == by_decord.scenes
    assert [f.index for f in decoded.frames] == [f.index for f in by_decord.frames]
