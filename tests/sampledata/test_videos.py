"""Tests of sampledata.videos: what each synthetic video holds, as PyAV and decord decode it.

Scene videos must decode in both readers with the planned frame count, rate, size and colours;
rotated videos must show their marker where asked once turned upright; the broken files must
fail the way their docstrings say.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction

import av
import decord
import numpy as np
import pytest
from decord._ffi.base import DECORDError

from curation.mp4_rotation import display_rotation
from sampledata.videos import (
    LONG_VIDEO_COLOURS,
    corrupt_stream,
    random_bytes,
    scene_cut_times,
    scene_frame_counts,
    truncate,
    write_audio_only,
    write_long_video,
    write_scene_video,
)

SCENES = [(1.0, (200, 30, 60)), (1.5, (20, 180, 90)), (0.8, (40, 40, 220))]
FPS = 10
SIZE = (160, 96)
TOLERANCE = 8  # mean absolute difference per channel after yuv420p encoding


def expected_colours(scenes, fps):
    return [colour for (seconds, colour) in scenes for _ in range(int(round(seconds * fps)))]


def pyav_frames(path):
    """(frames as rgb24 arrays, their times, the PyAV frames' rotation, rate, stream size)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return (
            [f.to_ndarray(format="rgb24") for f in frames],
            [float(f.time) for f in frames],
            [f.rotation for f in frames],
            stream.average_rate,
            (stream.codec_context.width, stream.codec_context.height),
        )


def decord_frames(path):
    reader = decord.VideoReader(path)
    return reader.get_batch(list(range(len(reader)))).asnumpy(), reader.get_avg_fps()


def channel_error(frame, colour):
    return np.abs(frame.reshape(-1, 3).astype(float).mean(axis=0) - np.array(colour, float)).max()


def marker_centre(frame):
    """Centre of the white marker as fractions ``(x, y)`` of the frame's width and height."""
    ys, xs = np.nonzero(frame.min(axis=2) > 230)
    assert len(ys), "no marker found"
    return (xs.mean() + 0.5) / frame.shape[1], (ys.mean() + 0.5) / frame.shape[0]


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_scene_video_decodes_in_pyav_and_decord(tmp_path, codec):
    path = str(tmp_path / f"{codec}.mp4")
    write_scene_video(path, SCENES, fps=FPS, size=SIZE, codec=codec)
    colours = expected_colours(SCENES, FPS)
    assert len(colours) == 10 + 15 + 8 == sum(scene_frame_counts(SCENES, FPS))

    frames, times, rotations, rate, size = pyav_frames(path)
    assert len(frames) == len(colours)
    assert rate == FPS
    assert size == SIZE
    assert times == pytest.approx([i / FPS for i in range(len(colours))])
    assert set(rotations) == {0}
    for frame, colour in zip(frames, colours):
        assert frame.shape == (SIZE[1], SIZE[0], 3)
        assert channel_error(frame, colour) < TOLERANCE

    batch, fps = decord_frames(path)
    assert fps == pytest.approx(FPS)
    assert batch.shape == (len(colours), SIZE[1], SIZE[0], 3)
    for frame, colour in zip(batch, colours):
        assert channel_error(frame, colour) < TOLERANCE
    assert display_rotation(path) == 0


def test_cuts_are_where_scene_cut_times_says(tmp_path):
    path = str(tmp_path / "cuts.mp4")
    write_scene_video(path, SCENES, fps=FPS)
    cuts = scene_cut_times(SCENES, FPS)
    assert cuts == pytest.approx([1.0, 2.5])
    frames, times, *_ = pyav_frames(path)
    means = np.array([f.reshape(-1, 3).mean(axis=0) for f in frames])
    jumps = [times[i] for i in range(1, len(frames)) if np.abs(means[i] - means[i - 1]).max() > 40]
    assert jumps == pytest.approx(cuts)


def test_scene_cut_times_rounds_frames_and_skips_empty_scenes():
    scenes = [(0.04, (0, 0, 0)), (0.26, (1, 1, 1)), (0.0, (2, 2, 2)), (0.5, (3, 3, 3))]
    assert scene_frame_counts(scenes, 10) == [0, 3, 0, 5]
    assert scene_cut_times(scenes, 10) == pytest.approx([0.3])
    assert scene_cut_times([(2.0, (0, 0, 0))], 10) == []
    assert scene_cut_times([(1.0, (0, 0, 0)), (1.0, (9, 9, 9))], 25) == pytest.approx([1.0])


def test_noise_makes_near_duplicates_deterministically(tmp_path):
    noisy, again, clean = (str(tmp_path / name) for name in ("n.mp4", "n2.mp4", "c.mp4"))
    write_scene_video(noisy, SCENES, noise=8)
    write_scene_video(again, SCENES, noise=8)
    write_scene_video(clean, SCENES)
    assert open(noisy, "rb").read() == open(again, "rb").read()
    frames, *_ = pyav_frames(noisy)
    colours = expected_colours(SCENES, FPS)
    for frame, colour in zip(frames, colours):
        assert channel_error(frame, colour) < TOLERANCE
    first_scene = frames[:10]
    for a, b in zip(first_scene, first_scene[1:]):
        assert not np.array_equal(a, b)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 12
    assert np.abs(first_scene[0].astype(int) - first_scene[1].astype(int)).mean() > 1
    clean_frames, *_ = pyav_frames(clean)
    assert np.array_equal(clean_frames[1], clean_frames[2])  # without noise: identical frames


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotated_video_shows_the_marker_where_asked(tmp_path, rotation):
    path = str(tmp_path / f"r{rotation}.mp4")
    marker = (0.8, 0.2)
    write_scene_video(path, [(0.5, (30, 90, 200))], size=SIZE, marker=marker, rotation=rotation)
    assert display_rotation(path) == rotation

    frames, _times, rotations, _rate, stored_size = pyav_frames(path)
    assert len(frames) == 5
    # PyAV hands out the stored pixels, pre-rotated counter-clockwise ...
    assert stored_size == (SIZE[::-1] if rotation in (90, 270) else SIZE)
    assert frames[0].shape[:2] == (stored_size[1], stored_size[0])
    # ... and FFmpeg reports the display matrix as counter-clockwise degrees.
    assert all((-r) % 360 == rotation for r in rotations)
    upright = np.rot90(frames[0], k=-rotation // 90)
    assert upright.shape == (SIZE[1], SIZE[0], 3)
    assert marker_centre(upright) == pytest.approx(marker, abs=0.03)
    if rotation:
        assert marker_centre(frames[0]) != pytest.approx(marker, abs=0.1)

    # decord 0.6.0 turns frames upright itself (and exposes no rotation).
    batch, _fps = decord_frames(path)
    assert batch.shape == (5, SIZE[1], SIZE[0], 3)
    assert marker_centre(batch[0]) == pytest.approx(marker, abs=0.03)


def test_marker_stays_inside_the_frame(tmp_path):
    path = str(tmp_path / "corner.mp4")
    write_scene_video(path, [(0.2, (0, 0, 0))], size=(100, 50), marker=(1.0, 0.0))
    frames, *_ = pyav_frames(path)
    white = frames[0].min(axis=2) > 230
    ys, xs = np.nonzero(white)
    side = round(0.12 * 50)
    assert xs.max() >= 100 - 2 and ys.min() <= 1
    assert abs((xs.max() - xs.min() + 1) - side) <= 2 and abs((ys.max() - ys.min() + 1) - side) <= 2


@pytest.mark.parametrize(
    "kwargs", [{"size": (161, 96)}, {"size": (160, 0)}, {"rotation": 45}, {"rotation": -90}, {"noise": -1}]
)
def test_scene_video_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        write_scene_video(str(tmp_path / "bad.mp4"), SCENES, **kwargs)


def test_scene_video_needs_a_frame(tmp_path):
    with pytest.raises(ValueError):
        write_scene_video(str(tmp_path / "empty.mp4"), [(0.01, (0, 0, 0))])


def test_fractional_rate(tmp_path):
    path = str(tmp_path / "ntsc.mp4")
    write_scene_video(path, [(0.5, (90, 90, 90))], fps=29.97)
    frames, _times, _rot, rate, _size = pyav_frames(path)
    assert len(frames) == 15
    assert rate == Fraction(2997, 100)
    assert decord.VideoReader(path).get_avg_fps() == pytest.approx(29.97, abs=0.01)
    ntsc = Fraction(30000, 1001)
    write_scene_video(path, [(1.0, (90, 90, 90)), (1.0, (10, 10, 10))], fps=ntsc)
    frames, times, _rot, rate, _size = pyav_frames(path)
    assert len(frames) == 60 and rate == ntsc
    assert times[30] == pytest.approx(float(30 / ntsc), abs=1e-3)
    assert scene_cut_times([(1.0, (90, 90, 90)), (1.0, (10, 10, 10))], ntsc) == pytest.approx([30 * 1001 / 30000])


def test_long_video_cycles_colours(tmp_path):
    path = str(tmp_path / "long.mp4")
    write_long_video(path, seconds=23, fps=2, scene_seconds=5.0)
    reader = decord.VideoReader(path)
    assert len(reader) == 46
    assert reader.get_avg_fps() == pytest.approx(2)
    assert reader[0].shape == (48, 64, 3)
    # scenes of 10 frames, the last of 6
    for index, scene in [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (39, 3), (40, 4), (45, 4)]:
        assert channel_error(reader[index].asnumpy(), LONG_VIDEO_COLOURS[scene]) < TOLERANCE
    with av.open(path) as container:
        assert sum(1 for _ in container.decode(video=0)) == 46


def test_long_video_is_long_but_small(tmp_path):
    path = str(tmp_path / "hour.mp4")
    write_long_video(path, seconds=3600, fps=1, scene_seconds=30)
    assert os.path.getsize(path) < 2 << 20
    reader = decord.VideoReader(path)
    assert len(reader) == 3600
    assert channel_error(reader[3599].asnumpy(), LONG_VIDEO_COLOURS[119 % len(LONG_VIDEO_COLOURS)]) < TOLERANCE


def test_audio_only_has_no_video_stream(tmp_path):
    for name in ("a.m4a", "a.mp4"):
        path = str(tmp_path / name)
        write_audio_only(path)
        with av.open(path) as container:
            assert len(container.streams.video) == 0
            (audio,) = container.streams.audio
            assert audio.codec_context.name == "aac"
            samples = sum(frame.samples for frame in container.decode(audio))
            assert 0.9 * audio.rate <= samples <= 1.2 * audio.rate
        with pytest.raises(DECORDError, match="cannot find video stream"):
            decord.VideoReader(path)
        assert display_rotation(path) == 0


def test_truncated_video_fails_to_open(tmp_path):
    src, dst = str(tmp_path / "src.mp4"), str(tmp_path / "cut.mp4")
    write_scene_video(src, SCENES)
    truncate(src, dst)
    assert os.path.getsize(dst) == os.path.getsize(src) // 2
    assert open(dst, "rb").read() == open(src, "rb").read()[: os.path.getsize(dst)]
    with pytest.raises(av.error.InvalidDataError, match="Invalid data found"):
        av.open(dst)
    with pytest.raises(RuntimeError, match="Error reading"):
        decord.VideoReader(dst)
    truncate(src, dst, fraction=0.1)
    assert os.path.getsize(dst) == int(os.path.getsize(src) * 0.1)


def test_random_bytes_fail_to_open(tmp_path):
    path, other = str(tmp_path / "r.mp4"), str(tmp_path / "r2.mp4")
    random_bytes(path)
    assert os.path.getsize(path) == 20000
    random_bytes(other, seed=0)
    assert open(path, "rb").read() == open(other, "rb").read()
    random_bytes(other, size=500, seed=1)
    assert os.path.getsize(other) == 500 and open(other, "rb").read() != open(path, "rb").read()[:500]
    with pytest.raises(av.error.InvalidDataError):
        av.open(path)
    with pytest.raises(RuntimeError, match="Error reading"):
        decord.VideoReader(path)


def mdat_span(data):
    """(header start, payload start, end) of the top-level mdat box of a small PyAV-written MP4."""
    offset = 0
    while offset < len(data):
        size, box_type = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        if box_type == b"mdat":
            return offset, offset + header, offset + size
        offset += size
    raise AssertionError("no mdat")


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_corrupt_stream_keeps_the_container_and_breaks_every_frame(tmp_path, codec):
    src, dst = str(tmp_path / "src.mp4"), str(tmp_path / "bad.mp4")
    write_scene_video(src, SCENES, codec=codec)
    corrupt_stream(src, dst, seed=3)
    good, bad = open(src, "rb").read(), open(dst, "rb").read()
    start, payload, end = mdat_span(good)
    assert len(bad) == len(good)
    assert bad[:payload] == good[:payload] and bad[end:] == good[end:]  # headers and moov intact
    same = sum(x == y for x, y in zip(good[payload:end], bad[payload:end]))
    assert same < 0.02 * (end - payload)  # the payload is replaced (1/256 of bytes match by chance)

    with av.open(dst) as container:
        stream = container.streams.video[0]
        assert stream.frames == sum(scene_frame_counts(SCENES, FPS))
        assert stream.average_rate == FPS
        # FFmpeg's probe finds no valid mpeg4 frame header, so that codec's size reads 0x0.
        size = (stream.codec_context.width, stream.codec_context.height)
        assert size == ((0, 0) if codec == "mpeg4" else SIZE)
        decoded = errors = packets = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets += 1
            try:
                decoded += len(packet.decode())
            except av.error.InvalidDataError:
                errors += 1
        try:
            decoded += len(stream.decode(None))
        except av.error.FFmpegError:
            pass
    assert packets == stream.frames
    assert decoded == 0
    assert errors == packets  # PyAV raises for every packet rather than returning garbage frames
    with pytest.raises(DECORDError, match="Cannot create buffer source"):
        decord.VideoReader(dst)

    corrupt_stream(src, str(tmp_path / "again.mp4"), seed=3)
    assert open(str(tmp_path / "again.mp4"), "rb").read() == bad


def test_corrupt_stream_needs_an_mdat(tmp_path):
    path = str(tmp_path / "a.bin")
    random_bytes(path, size=64)
    with pytest.raises(ValueError):
        corrupt_stream(path, str(tmp_path / "b.bin"))
