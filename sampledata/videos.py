"""Video inputs for the demo, the tests and the benchmarks: scene videos with hard cuts, rotated
phone-style videos, audio-only files, and broken files (cut short, random bytes, garbage payload).

Everything is written with PyAV (FFmpeg's bundled ``mpeg4`` encoder, always present; ``aac`` for
audio), deterministically and small, so a test can make its inputs in milliseconds and know
exactly what each frame holds: :func:`write_scene_video` holds one solid colour per scene,
optionally with seeded noise and a white orientation marker, and :func:`scene_cut_times` gives
the times of its cuts.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from curation.mp4_rotation import set_display_rotation

DEFAULT_CODEC = "mpeg4"  # FFmpeg's own MPEG-4 Part 2 encoder: in every PyAV build
MARKER_FRACTION = 0.12  # side of the marker square, as a fraction of the short side
_NOISE_SEED = 20240611
_FF_QP2LAMBDA = 118  # FFmpeg's factor from a quantiser to its lambda scale
# Colours cycled through by write_long_video: far apart, so every cut is a hard one.
LONG_VIDEO_COLOURS = [
    (220, 40, 40),
    (40, 200, 60),
    (40, 60, 220),
    (230, 220, 50),
    (200, 60, 200),
    (50, 210, 210),
    (240, 240, 240),
    (30, 30, 30),
]


def scene_frame_counts(scenes: Sequence[tuple[float, tuple[int, int, int]]], fps: float) -> list[int]:
    """Frames per scene as :func:`write_scene_video` writes them: ``int(round(seconds * fps))``."""
    return [int(round(seconds * fps)) for seconds, _colour in scenes]


def scene_cut_times(scenes: Sequence[tuple[float, tuple[int, int, int]]], fps: float) -> list[float]:
    """Times, in seconds, of the first frame of every scene after the first.

    Each is ``frame_index / fps`` of that frame in the video :func:`write_scene_video` writes
    (scenes of zero frames add no cut).
    """
    cuts = []
    index = 0
    for count in scene_frame_counts(scenes, fps):
        if count and index:
            cuts.append(float(index / fps))
        index += count
    return cuts


def write_scene_video(
    path: str,
    scenes: Sequence[tuple[float, tuple[int, int, int]]],
    fps: float = 10,
    size: tuple[int, int] = (160, 96),
    codec: str = DEFAULT_CODEC,
    noise: int = 0,
    marker: tuple[float, float] | None = None,
    rotation: int = 0,
) -> None:
    """Write a video of solid-colour scenes with hard cuts.

    Scene ``i`` holds its colour for ``int(round(seconds * fps))`` frames. Frames are encoded as
    yuv420p at high quality (constant quantiser 2 for ``mpeg4``, CRF 10 for ``libx264``) with a
    keyframe every second, so decoded colours stay within a few levels of the scene colour and
    seeking works. The container comes from the file extension (``.mp4``, ``.mov``, ``.mkv``, ...).
    The bytes written are the same on every call with the same arguments.

    Args:
        path: the file to write.
        scenes: ``(seconds, (r, g, b))`` per scene.
        fps: frames per second: an int, a float or a :class:`fractions.Fraction` (30000/1001).
        size: ``(width, height)`` of the *displayed* (upright) picture; both even.
        codec: an FFmpeg video encoder available in PyAV (``mpeg4``, ``libx264``, ...).
        noise: amplitude of seeded per-frame noise, uniform in ``[-noise, noise]`` per pixel and
            channel, so frames of one scene are near-duplicates but not identical (0: none).
        marker: ``(x, y)``, fractions of the displayed width and height, of the centre of a white
            square whose side is :data:`MARKER_FRACTION` of the short side, drawn in every frame
            (kept inside the frame); None for no marker.
        rotation: clockwise display rotation (0, 90, 180 or 270) written into the track header
            with :func:`curation.mp4_rotation.set_display_rotation` (ISO BMFF containers only).
            The pixels are stored pre-rotated *counter-clockwise* by ``rotation``
            (``np.rot90(upright, k=rotation // 90)``), so the stored frame is ``height x width``
            for 90 and 270, and a player that turns it clockwise by ``rotation`` shows the upright
            picture of size ``size`` with the marker at ``marker``.

    Raises:
        ValueError: an odd width or height, a rotation that is not 0, 90, 180 or 270, a negative
            noise, or no frames at all; or a rotation asked of a container that is not ISO BMFF
            (raised after writing, by :func:`~curation.mp4_rotation.set_display_rotation`).
    """
    counts = scene_frame_counts(scenes, fps)
    colours = [colour for _seconds, colour in scenes]
    _write_frames(path, counts, colours, fps, size, codec, noise, marker, rotation)


def write_long_video(
    path: str, seconds: float, fps: float = 2, size: tuple[int, int] = (64, 48), scene_seconds: float = 5.0
) -> None:
    """Write a long video of many short scenes cycling through :data:`LONG_VIDEO_COLOURS`.

    The video holds ``int(round(seconds * fps))`` frames in scenes of
    ``max(1, int(round(scene_seconds * fps)))`` frames (the last one possibly shorter), for
    tests and benchmarks of time and frame budgets; an hour at 1 fps is 3600 frames, under 2 MiB,
    written in about a second.

    Raises:
        ValueError: an odd width or height, or no frames at all.
    """
    total = int(round(seconds * fps))
    per_scene = max(1, int(round(scene_seconds * fps)))
    counts = [per_scene] * (total // per_scene) + ([total % per_scene] if total % per_scene else [])
    colours = [LONG_VIDEO_COLOURS[i % len(LONG_VIDEO_COLOURS)] for i in range(len(counts))]
    _write_frames(path, counts, colours, fps, size, DEFAULT_CODEC, 0, None, 0)


def write_audio_only(path: str, seconds: float = 1.0, rate: int = 16000) -> None:
    """Write an MP4 (``.mp4`` or ``.m4a``) with one AAC mono stream (a 440 Hz tone) and no video."""
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        samples = int(round(seconds * rate))
        t = np.arange(samples) / rate
        tone = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
        chunk = 1024
        for start in range(0, samples, chunk):
            block = tone[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def truncate(src: str, dst: str, fraction: float = 0.5) -> None:
    """Copy the first ``int(len * fraction)`` bytes of ``src`` to ``dst`` (a download cut short).

    PyAV writes ``moov`` after ``mdat``, so cutting a video from :func:`write_scene_video` anywhere
    before its end loses the index: PyAV's ``av.open`` raises ``av.error.InvalidDataError``
    (``Invalid data found when processing input``; FFmpeg logs ``moov atom not found``) and
    decord's ``VideoReader`` raises ``RuntimeError`` (``Error reading <path>...``).
    """
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def random_bytes(path: str, size: int = 20000, seed: int = 0) -> None:
    """Write ``size`` seeded random bytes: a file no demuxer recognises."""
    with open(path, "wb") as f:
        f.write(np.random.default_rng(seed).bytes(size))


def corrupt_stream(src: str, dst: str, seed: int = 0) -> None:
    """Copy an MP4 with the payload of every top-level ``mdat`` box replaced by seeded random bytes.

    The box headers and ``moov`` stay intact, so the container opens and reports the original
    streams, codec, rate and frame count (the ``mpeg4`` codec context's width and height read 0,
    as FFmpeg's probe no longer finds a frame header), but no coded frame is valid. Checked with
    PyAV 18.1 (FFmpeg 8) and decord 0.6.0 (FFmpeg 4.1) on ``mpeg4`` and ``libx264`` videos from
    :func:`write_scene_video`: PyAV opens it, demuxes every packet, and decoding raises
    ``av.error.InvalidDataError`` for every packet (``header damaged`` for mpeg4, ``Invalid NAL
    unit size`` for H.264), so not one frame comes out; decord raises ``DECORDError`` already in
    ``VideoReader(path)`` (``Cannot create buffer source``: its decoder never learns the frame
    size), so it returns no frames either. Neither decodes garbage frames silently.

    Raises:
        ValueError: ``src`` has no ``mdat`` box.
    """
    with open(src, "rb") as f:
        data = bytearray(f.read())
    rng = np.random.default_rng(seed)
    found = False
    offset = 0
    while offset + 8 <= len(data):
        size, box_type = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header:
            break
        if box_type == b"mdat":
            end = min(offset + size, len(data))
            data[offset + header : end] = rng.bytes(end - offset - header)
            found = True
        offset += size
    if not found:
        raise ValueError(f"{src}: no mdat box")
    with open(dst, "wb") as f:
        f.write(bytes(data))


def _frame(
    colour: tuple[int, int, int],
    size: tuple[int, int],
    marker: tuple[float, float] | None,
) -> np.ndarray:
    """The upright ``height x width x 3`` picture of one frame, before noise and rotation."""
    width, height = size
    picture = np.empty((height, width, 3), np.uint8)
    picture[:] = colour
    if marker is not None:
        side = max(2, int(round(MARKER_FRACTION * min(width, height))))
        left = int(round(marker[0] * width - side / 2))
        top = int(round(marker[1] * height - side / 2))
        left = min(max(left, 0), width - side)
        top = min(max(top, 0), height - side)
        picture[top : top + side, left : left + side] = 255
    return picture


def _write_frames(
    path: str,
    counts: Sequence[int],
    colours: Sequence[tuple[int, int, int]],
    fps: float,
    size: tuple[int, int],
    codec: str,
    noise: int,
    marker: tuple[float, float] | None,
    rotation: int,
) -> None:
    """Encode ``counts[i]`` frames of ``colours[i]``, then write the display rotation."""
    width, height = size
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, not {size}")
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270, not {rotation!r}")
    if noise < 0:
        raise ValueError(f"noise must not be negative, not {noise}")
    if sum(counts) <= 0:
        raise ValueError("a video needs at least one frame")
    turns = rotation // 90
    stored_width, stored_height = (height, width) if turns % 2 else (width, height)
    rate = Fraction(fps).limit_denominator(1001)
    rng = np.random.default_rng(_NOISE_SEED)
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = stored_width
        stream.height = stored_height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        context = stream.codec_context
        context.gop_size = max(1, int(round(fps)))
        if codec == "mpeg4":  # constant quantiser 2 (FFmpeg's -qscale:v 2): global_quality in lambda units
            context.options = {"flags": "+qscale", "global_quality": str(2 * _FF_QP2LAMBDA)}
        elif codec in ("libx264", "h264"):
            context.options = {"crf": "10", "preset": "ultrafast", "bf": "0"}
        else:
            context.bit_rate = 8_000_000
        index = 0
        for count, colour in zip(counts, colours):
            picture = _frame(colour, size, marker)
            stored = np.ascontiguousarray(np.rot90(picture, k=turns))
            for _ in range(count):
                pixels = stored
                if noise:
                    offsets = rng.integers(-noise, noise + 1, size=stored.shape, dtype=np.int16)
                    pixels = np.clip(stored.astype(np.int16) + offsets, 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
                index += 1
        for packet in stream.encode():
            container.mux(packet)
    if rotation:
        set_display_rotation(path, rotation)



@dataclass(frozen=True)
class VideoCase:
    """One input video and what ``curate video`` must make of it: ``expect`` is ``sample`` (a
    sample in ``shards/``), ``long`` (routed to ``long/`` when routing) or a dead letter's reason."""

    name: str
    expect: str
    scenes: tuple[tuple[float, tuple[int, int, int]], ...] = ()


SCENE_VIDEOS = {
    "harbour.mp4": ((2.0, (200, 30, 30)), (1.5, (30, 170, 60)), (3.0, (30, 60, 220))),
    "market.mp4": ((3.0, (230, 220, 50)), (2.0, (140, 50, 170))),
}


def write_video_inputs(directory: str, fps: float = 10) -> list[VideoCase]:
    """Writes a small corpus into ``directory``: scene videos, a phone video with rotation metadata,
    a copy of one video under another name, a long video, and broken files of every kind."""
    os.makedirs(directory, exist_ok=True)
    cases = []
    for name, scenes in SCENE_VIDEOS.items():
        write_scene_video(os.path.join(directory, name), scenes, fps=fps, marker=(0.25, 0.3))
        cases.append(VideoCase(name, "sample", scenes))
    phone = ((2.0, (50, 210, 210)),)
    write_scene_video(os.path.join(directory, "phone.mp4"), phone, fps=fps, size=(96, 160), marker=(0.2, 0.15),
                      rotation=90)
    cases.append(VideoCase("phone.mp4", "sample", phone))
    harbour = os.path.join(directory, "harbour.mp4")
    with open(harbour, "rb") as source, open(os.path.join(directory, "harbour-copy.mp4"), "wb") as copy:
        copy.write(source.read())
    cases.append(VideoCase("harbour-copy.mp4", "duplicate"))
    write_long_video(os.path.join(directory, "lecture.mp4"), seconds=300, fps=2, scene_seconds=20.0)
    cases.append(VideoCase("lecture.mp4", "long"))
    truncate(harbour, os.path.join(directory, "cut-short.mp4"))
    cases.append(VideoCase("cut-short.mp4", "corrupt_video"))
    random_bytes(os.path.join(directory, "noise.mp4"))
    cases.append(VideoCase("noise.mp4", "corrupt_video"))
    corrupt_stream(harbour, os.path.join(directory, "garbled.mp4"))
    cases.append(VideoCase("garbled.mp4", "corrupt_video"))
    write_audio_only(os.path.join(directory, "podcast.mp4"))
    cases.append(VideoCase("podcast.mp4", "no_video_stream"))
    return cases
