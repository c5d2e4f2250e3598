"""Video decoding in a child process with a wall-clock and a memory limit.

Decoders crash, hang and leak on bad files (decord can take its process down with a
segfault), so no video is decoded in a pipeline worker's own process.
:func:`decode_isolated` starts ``python -m curation.video_decode`` for each video and waits
at most ``timeout_seconds``. The child imports its libraries, then caps its own address
space (``RLIMIT_AS``, ``VideoSettings.memory_mb``) before it opens the file: capped
earlier, an allocation failing inside a library's import can hang instead of failing
(OpenBLAS retrying forever, seen with one numpy build). Whatever goes wrong becomes a :class:`VideoRejected` with one of
its reasons, and the worker and the other videos go on:

* ``corrupt_video``: neither decoder can open it, no frame decodes, or the decoder died;
* ``no_video_stream``: a container without a video stream (audio only);
* ``decode_timeout``: the child ran past its wall-clock limit and was killed;
* ``decode_memory``: the child ran out of its memory limit (a ``MemoryError``, or any failure
  once its peak address space has reached the limit);
* ``too_large``: a remote file that grew past ``max_file_bytes`` while it was staged.

Inside the child, :func:`decode_video` probes the file with PyAV (codec, rotation,
duration), decodes with decord, or with PyAV when decord cannot open the file, in
two passes: every frame at ``scenes.analysis_width`` for shot boundaries
(:class:`curation.scenes.CutDetector`), then only the planned frames
(:func:`curation.scenes.plan_frames`) at full size. Those are turned upright by the
container's display rotation (an MP4 or MOV track matrix, :mod:`curation.mp4_rotation`;
decord 0.6 applies it itself and does not say so, PyAV hands out the stored pixels), resized so their long side fits the recipe's resolution
band, and stored as JPEG. Only the encoded frames cross back to the parent.
"""

from __future__ import annotations

import importlib
import os
import pickle
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import numpy as np

from curation.failures import NamedFailure
from curation.images import hamming
from curation.records import ImageData
from curation.scenes import CutDetector, FramePlan, SceneSettings, plan_frames
from curation.tokens import HIGH_SIDE, MEDIUM_SIDE

_MB = 1 << 20
_DETAIL_CHARS = 500
_BATCH = 32
_DECODE_MODULES = ("av", "decord", "PIL.Image", "curation.images", "curation.mp4_rotation")
_MEMORY_WORDS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory", "Memory allocation", "memory allocation")


class VideoRejected(NamedFailure):
    """A video that could not be decoded, with the reason why."""

    reasons = frozenset({"corrupt_video", "no_video_stream", "decode_timeout", "decode_memory", "too_large"})


@dataclass(frozen=True)
class VideoSettings:
    """How videos are read (config section ``video``).

    Attributes:
        timeout_seconds: the wall-clock limit of one video's decode (the child is killed after it).
        memory_mb: the address-space limit of the decoding child.
        max_file_bytes: larger files are ``too_large`` before any decode.
        frame_resolution: ``medium`` (long side 490 px) or ``high`` (980 px): the recipe's
            resolution band frames are resized into (never upscaled).
        frame_quality: JPEG quality of the stored frames.
        decoders: the decoders tried in order (``decord``, ``pyav``).
        scenes: shot detection and frame sampling.
    """

    timeout_seconds: float = 300.0
    memory_mb: int = 4096
    max_file_bytes: int = 4 << 30
    frame_resolution: str = "medium"
    frame_quality: int = 90
    decoders: tuple[str, ...] = ("decord", "pyav")
    scenes: SceneSettings = field(default_factory=SceneSettings)

    def __post_init__(self) -> None:
        if self.frame_resolution not in ("medium", "high"):
            raise ValueError(f"video.frame_resolution must be medium or high, got {self.frame_resolution!r}")
        if not self.decoders or set(self.decoders) - {"decord", "pyav"}:
            raise ValueError(f"video.decoders takes decord and/or pyav, got {list(self.decoders)}")
        if self.timeout_seconds <= 0 or self.memory_mb < 64:
            raise ValueError("video.timeout_seconds must be > 0 and video.memory_mb >= 64")

    @property
    def frame_side(self) -> int:
        return MEDIUM_SIDE if self.frame_resolution == "medium" else HIGH_SIDE


@dataclass(frozen=True)
class DecodedFrame:
    """A planned frame, upright and resized: ``index`` in the stream, ``t`` in seconds."""

    index: int
    t: float
    scene: int
    keyframe: bool
    image: ImageData


@dataclass(frozen=True)
class DecodedVideo:
    """What a decode gives back: the facts, the scenes in seconds and the planned frames.

    ``meta`` holds ``duration``, ``fps``, ``width``, ``height`` (as displayed, after
    rotation), ``codec``, ``rotation``, ``frame_count``, ``decoder`` and ``capped``.
    """

    meta: dict[str, Any]
    scenes: list[tuple[float, float]]
    frames: list[DecodedFrame]


# --------------------------------------------------------------------------- the parent side


def decode_isolated(path: str, settings: VideoSettings = VideoSettings()) -> DecodedVideo:
    """Decodes the local file ``path`` in a child process under ``settings``' limits.

    Raises:
        VideoRejected: with the reason the video could not be decoded.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(
        _child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, start_new_session=True,
    )
    try:
        out, err = child.communicate(pickle.dumps((path, settings)), timeout=settings.timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill(child)
        raise VideoRejected("decode_timeout", f"no result within {settings.timeout_seconds:g} s") from None
    return _result(child.returncode, out, err.decode("utf-8", "replace"))


def _child_command() -> list[str]:
    return [sys.executable, "-m", "curation.video_decode"]


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.communicate()


def _result(returncode: int, out: bytes, err: str) -> DecodedVideo:
    if returncode == 0:
        try:
            outcome = pickle.loads(out)
        except Exception as error:  # a child that printed something else: a decoder bug, not the data
            raise VideoRejected("corrupt_video", f"unreadable decoder result: {error!r}"[:_DETAIL_CHARS]) from None
        if isinstance(outcome, DecodedVideo):
            return outcome
        reason, detail = outcome
        raise VideoRejected(reason, detail)
    tail = err.strip().splitlines()[-3:]
    if any(word in err for word in _MEMORY_WORDS):
        raise VideoRejected("decode_memory", " | ".join(tail)[:_DETAIL_CHARS])
    how = f"signal {-returncode} ({signal.Signals(-returncode).name})" if returncode < 0 else f"exit {returncode}"
    raise VideoRejected("corrupt_video", f"the decoder died: {how}: {' | '.join(tail)}"[:_DETAIL_CHARS])


def drop_near_duplicates(frames: list[DecodedFrame], distance: int) -> tuple[list[DecodedFrame], list[tuple[DecodedFrame, DecodedFrame]]]:
    """Keeps each scene's keyframe and every frame whose pHash is more than ``distance`` bits
    from all kept frames of its scene; returns ``(kept, [(dropped, the kept frame it repeats)])``."""
    if distance < 0:
        return list(frames), []
    kept_by_scene: dict[int, list[DecodedFrame]] = {}
    dropped = []
    for frame in sorted(frames, key=lambda f: (not f.keyframe, f.index)):
        scene = kept_by_scene.setdefault(frame.scene, [])
        twin = None if frame.keyframe else next(
            (k for k in scene if hamming(k.image.phash, frame.image.phash) <= distance), None)
        if twin is None:
            scene.append(frame)
        else:
            dropped.append((frame, twin))
    kept = sorted((f for scene in kept_by_scene.values() for f in scene), key=lambda f: f.index)
    return kept, sorted(dropped, key=lambda pair: pair[0].index)


# --------------------------------------------------------------------------- the child side


class _Reader(Protocol):
    fps: float
    frame_count: int

    def small(self, width: int, height: int) -> Iterator[np.ndarray]: ...

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]: ...


class _DecordReader:
    def __init__(self, path: str):
        import decord

        self._path = path
        self._decord = decord
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        self.fps = float(reader.get_avg_fps())
        self.frame_count = len(reader)
        self.size = tuple(reader[0].shape[:2]) if self.frame_count else (0, 0)
        self._reader = reader

    def small(self, width: int, height: int) -> Iterator[np.ndarray]:
        reader = self._decord.VideoReader(self._path, ctx=self._decord.cpu(0), width=width, height=height,
                                          num_threads=1)
        for start in range(0, len(reader), _BATCH):
            yield from reader.get_batch(list(range(start, min(start + _BATCH, len(reader))))).asnumpy()

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(indices), _BATCH):
            chunk = indices[start : start + _BATCH]
            yield from zip(chunk, self._reader.get_batch(chunk).asnumpy())


class _PyAVReader:
    def __init__(self, path: str):
        import av

        self._path = path
        self._av = av
        with av.open(path) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else 25.0
            declared = stream.frames  # 0 where the container does not say: then one decode pass counts
        self.frame_count = declared or sum(1 for _ in self._decode())

    def _decode(self) -> Iterator[Any]:
        with self._av.open(self._path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)

    def small(self, width: int, height: int) -> Iterator[np.ndarray]:
        for frame in self._decode():
            yield frame.to_ndarray(width=width, height=height, format="rgb24")

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        wanted = set(indices)
        for index, frame in enumerate(self._decode()):
            if index in wanted:
                yield index, frame.to_ndarray(format="rgb24")
            if index >= indices[-1]:
                return


@dataclass(frozen=True)
class _Probe:
    codec: str
    rotation: int
    duration: float | None


def _probe(path: str) -> _Probe | None:
    """Container facts from PyAV, or None when PyAV cannot open the file (decord may yet).

    Raises:
        VideoRejected: ``no_video_stream`` for a container without one.
    """
    import av

    from curation.mp4_rotation import display_rotation

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoRejected("no_video_stream", f"streams: {[s.type for s in container.streams]}")
            stream = container.streams.video[0]
            duration = container.duration / av.time_base if container.duration else None
            codec = stream.codec_context.name
    except av.error.FFmpegError:
        return None
    return _Probe(codec, display_rotation(path), duration)


def _open(path: str, decoders: tuple[str, ...]) -> tuple[str, _Reader]:
    errors = []
    for name in decoders:
        try:
            reader = _DecordReader(path) if name == "decord" else _PyAVReader(path)
        except MemoryError:
            raise
        except Exception as error:  # the next decoder may open what this one cannot
            errors.append(f"{name}: {type(error).__name__}: {error}")
            continue
        if reader.frame_count > 0:
            return name, reader
        errors.append(f"{name}: no frame decoded")
    raise VideoRejected("corrupt_video", "; ".join(errors)[:_DETAIL_CHARS])


def _analysis_size(height: int, width: int, analysis_width: int) -> tuple[int, int]:
    scale = analysis_width / max(width, 1)
    return analysis_width, max(8, int(round(height * scale)) // 2 * 2)


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """The stored frame turned clockwise by ``rotation`` degrees (np.rot90 turns counter-clockwise)."""
    return np.ascontiguousarray(np.rot90(pixels, k=-(rotation // 90) % 4)) if rotation % 360 else pixels


def decode_video(path: str, settings: VideoSettings = VideoSettings()) -> DecodedVideo:
    """Probes, analyses and samples one local video, in this process (the child's work).

    Raises:
        VideoRejected: ``corrupt_video`` or ``no_video_stream``.
    """
    from PIL import Image

    from curation.images import image_data

    probe = _probe(path)
    decoder, reader = _open(path, settings.decoders)
    first = next(iter(reader.frames([0])), None)
    if first is None:
        raise VideoRejected("corrupt_video", f"{decoder}: the first frame does not decode")
    # decord hands out frames already turned upright by the track's rotation; PyAV as stored
    turn = rotation = probe.rotation if probe else 0
    if decoder == "decord":
        turn = 0
    height, width = _upright(first[1], turn).shape[:2]
    detector = CutDetector(reader.fps, settings.scenes)
    for small in reader.small(*_analysis_size(height, width, settings.scenes.analysis_width)):
        detector.feed(small)
    if detector.frames == 0:
        raise VideoRejected("corrupt_video", f"{decoder}: no frame decoded")
    scenes = detector.scenes()
    plan: FramePlan = plan_frames(scenes, reader.fps, settings.scenes)
    info = {index: (scene, keyframe) for index, scene, keyframe in plan.frames}
    frames = []
    for index, pixels in reader.frames([index for index, _, _ in plan.frames]):
        image = Image.fromarray(_upright(pixels, turn))
        image.thumbnail((settings.frame_side, settings.frame_side), Image.Resampling.LANCZOS)
        scene, keyframe = info[index]
        frames.append(DecodedFrame(index, round(index / reader.fps, 3), scene, keyframe,
                                   image_data(image, "jpeg", settings.frame_quality)))
    if not frames:
        raise VideoRejected("corrupt_video", f"{decoder}: the planned frames do not decode")
    duration = detector.frames / reader.fps
    meta = {
        "duration": round(duration, 3), "fps": round(reader.fps, 3), "width": width, "height": height,
        "codec": probe.codec if probe else "", "rotation": rotation, "frame_count": detector.frames,
        "decoder": decoder, "capped": plan.capped,
        "container_duration": round(probe.duration, 3) if probe and probe.duration else None,
    }
    seconds = [(round(start / reader.fps, 3), round(end / reader.fps, 3)) for start, end in scenes]
    return DecodedVideo(meta, seconds, frames)


def _peak_bytes() -> int:
    """This process's peak address space (``VmPeak``), 0 where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child() -> None:
    path, settings = pickle.loads(sys.stdin.buffer.read())
    for module in _DECODE_MODULES:  # imported before the cap (see the module docstring)
        importlib.import_module(module)
    limit = settings.memory_mb * _MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        outcome: Any = decode_video(path, settings)
    except VideoRejected as rejected:
        outcome = (rejected.reason, rejected.detail)
    except MemoryError as error:
        outcome = ("decode_memory", f"MemoryError: {error}")
    except Exception as error:  # whatever else a decoder raises on a bad file
        outcome = ("corrupt_video", f"{type(error).__name__}: {error}"[:_DETAIL_CHARS])
    if isinstance(outcome, tuple) and outcome[0] == "corrupt_video" and _peak_bytes() >= 0.9 * limit:
        outcome = ("decode_memory", f"at the {settings.memory_mb} MB limit: {outcome[1]}"[:_DETAIL_CHARS])
    sys.stdout.buffer.write(pickle.dumps(outcome))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    # run as the importable module, so what is pickled back names curation.video_decode, not __main__
    from curation.video_decode import _child as child

    child()
