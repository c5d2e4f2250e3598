"""Video decoding, shot detection, decode isolation and ``curate video`` end to end, each against a
baseline measured in the same run.

    python bench/bench_video.py [--quick] [--seconds 60] [--size 640x360] [--fps 25] [--codecs mpeg4 libx264]
                                [--repeat 1] [--isolation-videos 10] [--pipeline-videos 12] [--delay 0.2]

Every input is written by the bench into a temporary folder with :mod:`sampledata.videos`:
``--seconds`` of ``--size`` video at ``--fps`` frames/s, 12 scenes of distinct solid colours
(hard cuts, known frame indices) with seeded per-pixel noise (``noise=4``) and a keyframe every
second, once per ``--codecs`` entry: ``mpeg4`` (FFmpeg's encoder at quantiser 2, the sampledata
default: small frames) and ``libx264`` (CRF 10: the noise survives, so frames cost about what a
web video's do). ``--quick`` shrinks everything (20 s at 320x180, fewer videos).

1. Decoding, frames/s per core. Every decoder is held to one thread (decord ``num_threads=1``,
   PyAV ``thread_count=1``), so frames per CPU second is a per-core rate; wall-clock frames/s is
   shown too. Sequential reads deliver every frame as RGB (decord ``get_batch`` over chunks of
   32 consecutive indices; PyAV ``to_ndarray(format="rgb24")``). Sampled reads deliver one frame
   per second, half a second past each keyframe, as a sampler landing between keyframes in a
   real video does: decord ``get_batch`` of those indices, PyAV ``container.seek`` to each time
   and decoding forward to it. Each sampled frame is compared with the same frame of that
   decoder's sequential read (mean absolute difference < 1 level). Baseline: PyAV sequential.
2. Scene detection, frames/s end to end (decode included). Ours: what
   :func:`curation.video_decode.decode_video` runs, decord at full size for frame 0, then every
   frame at analysis size (64 px wide) into :class:`curation.scenes.CutDetector`. Baseline:
   PySceneDetect's ``ContentDetector`` through its own API (``open_video`` with its default
   OpenCV backend, ``SceneManager`` with its default automatic downscale), OpenCV held to one
   thread as well (``cv2.setNumThreads(1)``, ``OPENCV_FFMPEG_CAPTURE_OPTIONS=threads;1``). Cut
   frame indices are checked against the written cuts and against each other (within 1 frame).
3. Isolation overhead per video: :func:`curation.video_decode.decode_isolated` (a child
   process per video, with its limits) against :func:`~curation.video_decode.decode_video` in this
   process, on ``--isolation-videos`` short videos (after one untimed warm-up of each). CPU time
   counts the children's too.
4. ``curate video`` end to end (DirectRunner) against ``sampledata.llm_server.LLMServer`` answering
   every request after ``--delay`` seconds, generator concurrency 8, on ``--pipeline-videos``
   short videos of 3 scenes each: ``captions.window: 1`` (one frame per caption request, the
   default) against the baseline ``captions.window: 4`` (several frames per request). Each row
   starts a fresh server; a one-video warm-up run before them pays the imports.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import decord  # noqa: E402
import numpy as np  # noqa: E402

from curation.scenes import CutDetector, SceneSettings  # noqa: E402
from curation.video_decode import VideoSettings, decode_isolated, decode_video  # noqa: E402
from sampledata.videos import LONG_VIDEO_COLOURS, scene_cut_times, write_scene_video  # noqa: E402

BATCH = 32  # decord get_batch chunk, as curation.video_decode reads
NOISE = 4
COLOURS = [*LONG_VIDEO_COLOURS, (255, 140, 0), (120, 70, 20), (255, 160, 200), (0, 120, 120)]  # 12, far apart


# --------------------------------------------------------------------------- timing


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(function: Callable[[], Any], repeat: int = 1) -> tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds)``, the least of ``repeat`` runs; CPU counts every
    thread of this process and the children that ended meanwhile."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        result = function()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu + _children_cpu() - children)
    return result, best_wall, best_cpu


# --------------------------------------------------------------------------- inputs


def scenes_for(seconds: float, count: int = 12, offset: int = 0) -> list[tuple[float, tuple[int, int, int]]]:
    return [(seconds / count, COLOURS[(offset + k) % len(COLOURS)]) for k in range(count)]


def cut_frames(scenes, fps: float) -> list[int]:
    return [int(round(t * fps)) for t in scene_cut_times(scenes, fps)]


def sample_indices(frame_count: int, fps: float) -> list[int]:
    """One frame a second, half a second past each keyframe (keyframes every second)."""
    indices = [int(round((k + 0.5) * fps)) for k in range(int(frame_count / fps) + 1)]
    return [i for i in indices if i < frame_count]


# --------------------------------------------------------------------------- 1. decoding


def _pyav_open(path: str):
    container = av.open(path)
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "SLICE"
    stream.codec_context.thread_count = 1
    return container, stream


def decord_sequential(path: str, keep: set[int]) -> tuple[int, dict[int, np.ndarray]]:
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    count, kept = 0, {}
    for start in range(0, len(reader), BATCH):
        indices = list(range(start, min(start + BATCH, len(reader))))
        frames = reader.get_batch(indices).asnumpy()
        count += len(frames)
        kept.update((i, frame.copy()) for i, frame in zip(indices, frames) if i in keep)
    return count, kept


def decord_sampled(path: str, indices: list[int]) -> dict[int, np.ndarray]:
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    kept = {}
    for start in range(0, len(indices), BATCH):
        chunk = indices[start : start + BATCH]
        kept.update(zip(chunk, reader.get_batch(chunk).asnumpy()))
    return kept


def pyav_sequential(path: str, keep: set[int]) -> tuple[int, dict[int, np.ndarray]]:
    container, stream = _pyav_open(path)
    count, kept = 0, {}
    with container:
        for index, frame in enumerate(container.decode(stream)):
            pixels = frame.to_ndarray(format="rgb24")
            count += 1
            if index in keep:
                kept[index] = pixels
    return count, kept


def pyav_sampled(path: str, indices: list[int], fps: float) -> dict[int, np.ndarray]:
    """Seeks to the keyframe at or before each sampled time, then decodes forward to that frame."""
    container, stream = _pyav_open(path)
    kept = {}
    with container:
        for index in indices:
            target = index / fps
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= target - 0.5 / fps:
                    kept[int(round(frame.time * fps))] = frame.to_ndarray(format="rgb24")
                    break
    return kept


def _same(sampled: dict[int, np.ndarray], sequential: dict[int, np.ndarray]) -> int:
    return sum(1 for i, frame in sampled.items()
               if i in sequential and frame.shape == sequential[i].shape
               and np.abs(frame.astype(np.int16) - sequential[i]).mean() < 1.0)


def bench_decoding(videos: dict[str, tuple[str, list, float]], repeat: int) -> None:
    print("\n## 1. Decoding, frames/s per core (one decoder thread; baseline: PyAV sequential)\n")
    print("| codec | reader | frames delivered | s per video | frames/s (wall) | frames/CPU-s (per core) "
          "| x baseline (per core) | same frames as sequential |")
    print("|---|---|---|---|---|---|---|---|")
    for codec, (path, _scenes, fps) in videos.items():
        frame_count = len(decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1))
        indices = sample_indices(frame_count, fps)
        keep = set(indices)
        (pyav_count, pyav_kept), pyav_wall, pyav_cpu = measure(lambda: pyav_sequential(path, keep), repeat)
        (decord_count, decord_kept), decord_wall, decord_cpu = measure(lambda: decord_sequential(path, keep), repeat)
        decord_seek, dseek_wall, dseek_cpu = measure(lambda: decord_sampled(path, indices), repeat)
        pyav_seek, pseek_wall, pseek_cpu = measure(lambda: pyav_sampled(path, indices, fps), repeat)
        base = pyav_count / pyav_cpu
        rows = [
            ("decord sequential (get_batch x32)", decord_count, decord_wall, decord_cpu, "-"),
            (f"decord sampled (get_batch of {len(indices)}, 1/s)", len(decord_seek), dseek_wall, dseek_cpu,
             f"{_same(decord_seek, decord_kept)}/{len(indices)}"),
            ("**PyAV sequential** (baseline)", pyav_count, pyav_wall, pyav_cpu, "-"),
            (f"PyAV seek + decode to each of {len(indices)} (1/s)", len(pyav_seek), pseek_wall, pseek_cpu,
             f"{_same(pyav_seek, pyav_kept)}/{len(indices)}"),
        ]
        for name, frames, wall, cpu, same in rows:
            print(f"| {codec} | {name} | {frames} | {wall:.2f} | {frames / wall:.0f} | {frames / cpu:.0f} | "
                  f"{frames / cpu / base:.2f} | {same} |")


# --------------------------------------------------------------------------- 2. scene detection


def ours_cuts(path: str) -> tuple[list[int], int, str]:
    """What decode_video does for shot boundaries: frame 0 at full size, then every frame small."""
    settings = SceneSettings()
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    fps = float(reader.get_avg_fps())
    height, width = reader[0].shape[:2]
    small_height = max(8, int(round(height * settings.analysis_width / width)) // 2 * 2)  # as video_decode does
    small = decord.VideoReader(path, ctx=decord.cpu(0), width=settings.analysis_width, height=small_height,
                               num_threads=1)
    detector = CutDetector(fps, settings)
    for start in range(0, len(small), BATCH):
        for frame in small.get_batch(list(range(start, min(start + BATCH, len(small))))).asnumpy():
            detector.feed(frame)
    return detector.cuts, detector.frames, f"{settings.analysis_width}x{small_height}"


def pyscenedetect_cuts(path: str) -> tuple[list[int], int, str]:
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path)
    manager = SceneManager()
    manager.add_detector(ContentDetector())
    frames = manager.detect_scenes(video)
    width, height = video.frame_size
    try:
        from scenedetect.scene_manager import compute_downscale_factor

        factor = max(1, int(compute_downscale_factor(width))) if manager.auto_downscale else manager.downscale
    except ImportError:
        factor = 1
    cuts = []
    for start, _end in manager.get_scene_list()[1:]:
        cuts.append(start.frame_num if hasattr(start, "frame_num") else start.get_frames())
    return cuts, frames, f"{width // factor}x{height // factor}"


def _matches(found: list[int], reference: list[int]) -> int:
    return sum(1 for cut in reference if any(abs(cut - other) <= 1 for other in found))


def bench_scenes(videos: dict[str, tuple[str, list, float]], repeat: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    import scenedetect

    print(f"\n## 2. Scene detection, frames/s end to end, decode included "
          f"(baseline: PySceneDetect {scenedetect.__version__} ContentDetector)\n")
    print("| codec | detector | analysed at | frames | s | frames/s | frames/CPU-s | x baseline (wall) "
          "| cuts: written / found / match written (+-1) / match baseline (+-1) | cut frame indices |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for codec, (path, scenes, fps) in videos.items():
        truth = cut_frames(scenes, fps)
        (theirs, their_frames, their_size), their_wall, their_cpu = measure(lambda: pyscenedetect_cuts(path), repeat)
        (ours, our_frames, our_size), our_wall, our_cpu = measure(lambda: ours_cuts(path), repeat)
        base = their_frames / their_wall
        rows = [
            ("curation.scenes.CutDetector (decord)", our_size, ours, our_frames, our_wall, our_cpu,
             str(_matches(ours, theirs))),
            ("**PySceneDetect ContentDetector** (OpenCV)", their_size, theirs, their_frames, their_wall, their_cpu,
             "-"),
        ]
        for name, size, cuts, frames, wall, cpu, vs_base in rows:
            print(f"| {codec} | {name} | {size} | {frames} | {wall:.2f} | {frames / wall:.0f} | {frames / cpu:.0f} "
                  f"| {frames / wall / base:.2f} | {len(truth)} / {len(cuts)} / {_matches(cuts, truth)} / {vs_base} "
                  f"| {' '.join(map(str, cuts))} |")
        print(f"| {codec} | (written) | | | | | | | | {' '.join(map(str, truth))} |")


# --------------------------------------------------------------------------- 3. isolation


def bench_isolation(paths: list[str]) -> None:
    settings = VideoSettings()
    decode_video(paths[0], settings)  # warm-up: imports, decoder libraries, page cache
    decode_isolated(paths[0], settings)
    (frames_in, wall_in, cpu_in) = measure(lambda: [len(decode_video(p, settings).frames) for p in paths])
    (frames_iso, wall_iso, cpu_iso) = measure(lambda: [len(decode_isolated(p, settings).frames) for p in paths])
    n = len(paths)
    print(f"\n## 3. Isolation overhead per video ({n} videos; baseline: decode_video in-process)\n")
    print("| mode | videos | ms per video (wall) | CPU ms per video (with children) | frames kept per video "
          "| overhead ms per video (wall) |")
    print("|---|---|---|---|---|---|")
    print(f"| **decode_video, in-process** (baseline) | {n} | {1000 * wall_in / n:.0f} | {1000 * cpu_in / n:.0f} "
          f"| {sum(frames_in) / n:.1f} | - |")
    print(f"| decode_isolated, child process per video | {n} | {1000 * wall_iso / n:.0f} | "
          f"{1000 * cpu_iso / n:.0f} | {sum(frames_iso) / n:.1f} | {1000 * (wall_iso - wall_in) / n:+.0f} |")


# --------------------------------------------------------------------------- 4. pipeline


def _samples(out: str) -> tuple[int, int]:
    """Samples in ``out/shards`` and the frames they hold."""
    samples = frames = 0
    for shard in glob.glob(os.path.join(out, "shards", "*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    samples += 1
                    frames += len(json.load(tar.extractfile(member)).get("frames", []))
    return samples, frames


def _run_pipeline(pattern: str, out: str, window: int, delay: float) -> tuple[float, int, int, int]:
    from curation.config import load_config
    from pipelines import video
    from sampledata.llm_server import LLMServer

    with LLMServer(delay=delay) as server:
        config = load_config(video.VideoConfig, text=f"""
dataset: bench-video
captions:
  window: {window}
generator:
  backend: endpoint
  endpoint: {server.base_url}
  model: bench
  concurrency: 8
""")
        start = time.perf_counter()
        video.run(pattern, out, config, ["--runner=DirectRunner"])
        elapsed = time.perf_counter() - start
        return (elapsed, *_samples(out), server.requests)


def bench_pipeline(directory: str, paths: list[str], delay: float) -> None:
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    warm = os.path.join(directory, "warm")
    os.makedirs(warm)
    shutil.copy(paths[0], warm)
    _run_pipeline(os.path.join(warm, "*.mp4"), os.path.join(directory, "out-warm"), 1, delay)
    pattern = os.path.join(os.path.dirname(paths[0]), "*.mp4")
    n = len(paths)
    rows = []
    for window in (1, 4):
        rows.append((window, *_run_pipeline(pattern, os.path.join(directory, f"out-window{window}"), window, delay)))
    base = n / rows[1][1]
    print(f"\n## 4. curate video end to end, DirectRunner, endpoint answering after {delay} s, concurrency 8 "
          f"({n} videos; baseline: captions.window 4)\n")
    print("| captions.window | videos | s | videos/s | x baseline | samples written | frames in samples "
          "| generator requests | requests per video |")
    print("|---|---|---|---|---|---|---|---|---|")
    for window, elapsed, samples, frames, requests in rows:
        name = f"**{window}** (baseline)" if window == 4 else f"{window}"
        print(f"| {name} | {n} | {elapsed:.1f} | {n / elapsed:.2f} | {n / elapsed / base:.2f} | {samples} | {frames} "
              f"| {requests} | {requests / n:.1f} |")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short, small inputs: about a minute in all")
    parser.add_argument("--seconds", type=float, help="length of the decoding/scene videos (default 60; quick 20)")
    parser.add_argument("--size", help="WIDTHxHEIGHT (default 640x360; quick 320x180)")
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--codecs", nargs="+", default=["mpeg4", "libx264"])
    parser.add_argument("--isolation-videos", type=int, help="3 s videos for section 3 (default 10; quick 4)")
    parser.add_argument("--pipeline-videos", type=int, help="videos for section 4 (default 12; quick 6)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each section 1 and 2 measurement (fastest)")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the endpoint takes per request")
    args = parser.parse_args()
    seconds = args.seconds or (20 if args.quick else 60)
    width, height = map(int, (args.size or ("320x180" if args.quick else "640x360")).split("x"))
    isolation_videos = args.isolation_videos or (4 if args.quick else 10)
    pipeline_videos = args.pipeline_videos or (6 if args.quick else 12)
    codecs = [codec for codec in args.codecs if codec in av.codecs_available]
    short_codec = "libx264" if "libx264" in codecs else codecs[0]
    fps = args.fps
    repeat = max(1, args.repeat)

    directory = tempfile.mkdtemp(prefix="bench-video-")
    try:
        start = time.perf_counter()
        videos = {}
        for codec in codecs:
            path = os.path.join(directory, f"scenes-{codec}.mp4")
            scenes = scenes_for(seconds)
            write_scene_video(path, scenes, fps=fps, size=(width, height), codec=codec, noise=NOISE)
            videos[codec] = (path, scenes, fps)
        os.makedirs(os.path.join(directory, "short"))
        os.makedirs(os.path.join(directory, "pipeline"))
        short = []
        for i in range(isolation_videos):
            short.append(os.path.join(directory, "short", f"clip{i:02d}.mp4"))
            write_scene_video(short[-1], scenes_for(3.0, 3, offset=i), fps=fps, size=(width, height),
                              codec=short_codec, noise=NOISE)
        pipeline = []
        for i in range(pipeline_videos):
            pipeline.append(os.path.join(directory, "pipeline", f"video{i:02d}.mp4"))
            write_scene_video(pipeline[-1], scenes_for(4.0, 3, offset=i), fps=fps, size=(width, height),
                              codec=short_codec, noise=NOISE, marker=(0.25, 0.3))
        print(f"Inputs: {seconds:g} s of {width}x{height} at {fps:g} fps, 12 scenes, noise {NOISE}, keyframe every "
              f"second ({', '.join(f'{c}: {os.path.getsize(v[0]) / 2**20:.1f} MiB' for c, v in videos.items())}); "
              f"{isolation_videos} x 3 s and {pipeline_videos} x 4 s {short_codec} videos; "
              f"written in {time.perf_counter() - start:.1f} s. PyAV {av.__version__}, decord {decord.__version__}, "
              f"{os.cpu_count()} CPUs.")
        bench_decoding(videos, repeat)
        bench_scenes(videos, repeat)
        bench_isolation(short)
        bench_pipeline(directory, pipeline, args.delay)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
