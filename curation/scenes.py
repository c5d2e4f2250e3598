"""Shot boundaries and the frames a video is sampled at: pure functions over small frames.

:class:`CutDetector` finds hard cuts from frames decoded at a small size (about 64
pixels wide), one frame at a time, so a video of any length is analysed in constant
memory. Its score is PySceneDetect's content score made cheaper: the mean absolute
difference between consecutive frames in HSV, scaled to 0..1 (PySceneDetect's
``ContentDetector`` averages the same three channel deltas on 0..255, default
threshold 27, about 0.106 here). A cut needs the score at or above ``threshold``
*and* ``adaptive`` times the median of the recent scores, so a shaky or noisy shot,
whose every frame differs a little, does not cut at each frame; a scene is at least
``min_scene_seconds`` long. Gradual transitions (fades, dissolves) are not cuts here,
as in PySceneDetect's content detector.

:func:`plan_frames` then picks the frames to keep: the middle frame of each scene (its
keyframe) plus frames every ``1 / fps_cap`` seconds, at most ``max_frames`` in all,
keyframes first.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneSettings:
    """How scenes are found and frames sampled (config section ``video.scenes``).

    Attributes:
        threshold: the smallest content score (0..1) that is a cut.
        adaptive: a cut's score is also at least this many times the median score of the
            last ``window`` frames (1.0 turns the adaptive test off).
        window: frames in the running median.
        min_scene_seconds: the shortest scene; a cut sooner after the last one is ignored.
        analysis_width: frames are analysed at this width (height by aspect ratio).
        fps_cap: uniform samples per second, besides each scene's keyframe.
        max_frames: the most frames sampled from one video (keyframes first).
        duplicate_distance: a frame whose pHash is within this many of its 64 bits of a kept
            frame of its scene is a near-duplicate and dropped (0 drops only identical hashes;
            -1 keeps all). Only frames of one scene are compared: flat frames of different
            colours share a pHash, and a cut is never a duplicate.
    """

    threshold: float = 0.1
    adaptive: float = 3.0
    window: int = 16
    min_scene_seconds: float = 0.4
    analysis_width: int = 64
    fps_cap: float = 1.0
    max_frames: int = 64
    duplicate_distance: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"video.scenes.threshold must be within (0, 1], got {self.threshold}")
        if self.fps_cap <= 0 or self.max_frames < 1 or self.window < 1 or self.analysis_width < 8:
            raise ValueError("video.scenes: fps_cap must be > 0, max_frames and window >= 1, analysis_width >= 8")


def hsv(frame: np.ndarray) -> np.ndarray:
    """An RGB ``uint8`` frame (H, W, 3) as HSV floats in 0..1 (hue on the colour circle)."""
    rgb = frame.astype(np.float32) / 255.0
    high = rgb.max(axis=2)
    low = rgb.min(axis=2)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(high == r, ((g - b) / safe) % 6.0, np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(chroma > 0, hue / 6.0, 0.0)
    saturation = np.where(high > 0, chroma / np.where(high > 0, high, 1.0), 0.0)
    return np.stack([hue, saturation, high], axis=2)


def content_score(previous: np.ndarray, current: np.ndarray) -> float:
    """The mean absolute HSV difference of two frames in 0..1 (hue distance taken around the circle)."""
    delta = np.abs(previous - current)
    delta[..., 0] = np.minimum(delta[..., 0], 1.0 - delta[..., 0]) * 2.0
    return float(delta.mean())


class CutDetector:
    """Finds hard cuts in a stream of small frames fed in order (see the module docstring).

    Attributes:
        cuts: the indices of the first frame of each scene after the first.
        frames: the frames seen so far.
    """

    def __init__(self, fps: float, settings: SceneSettings = SceneSettings()):
        self._settings = settings
        self._min_gap = max(1, int(round(settings.min_scene_seconds * fps)))
        self._recent: deque[float] = deque(maxlen=settings.window)
        self._previous: np.ndarray | None = None
        self.cuts: list[int] = []
        self.frames = 0

    def feed(self, frame: np.ndarray) -> None:
        """Takes the next frame (RGB ``uint8``, any size; small is fast)."""
        current = hsv(frame)
        index = self.frames
        self.frames += 1
        if self._previous is not None and self._previous.shape == current.shape:
            score = content_score(self._previous, current)
            median = statistics.median(self._recent) if self._recent else 0.0
            last = self.cuts[-1] if self.cuts else 0
            if (score >= self._settings.threshold and score >= self._settings.adaptive * median
                    and index - last >= self._min_gap):
                self.cuts.append(index)
                self._recent.clear()
            else:
                self._recent.append(score)
        self._previous = current

    def scenes(self) -> list[tuple[int, int]]:
        """``(first, end)`` frame indices of each scene (end exclusive), in order."""
        bounds = [0, *self.cuts, self.frames]
        return [(start, end) for start, end in zip(bounds, bounds[1:]) if end > start]


@dataclass(frozen=True)
class FramePlan:
    """The frames to decode at full size: ``(index, scene, keyframe)`` in time order."""

    frames: tuple[tuple[int, int, bool], ...]
    capped: bool = False  # True when max_frames left sampled frames out


def plan_frames(scenes: list[tuple[int, int]], fps: float, settings: SceneSettings = SceneSettings()) -> FramePlan:
    """Each scene's middle frame, plus one frame every ``1 / fps_cap`` seconds, at most
    ``max_frames``: keyframes first (evenly spread over the video when even they are too
    many), then the uniform samples evenly thinned to fit."""
    keyframes = {(start + end - 1) // 2: scene for scene, (start, end) in enumerate(scenes)}
    if len(keyframes) > settings.max_frames:
        chosen = _spread(sorted(keyframes), settings.max_frames)
        return FramePlan(tuple((i, keyframes[i], True) for i in chosen), capped=True)
    total = scenes[-1][1] if scenes else 0
    step = max(fps / settings.fps_cap, 1.0)
    uniform = sorted({int(round(k * step)) for k in range(int(total / step) + 1)} - set(keyframes))
    uniform = [i for i in uniform if i < total]
    room = settings.max_frames - len(keyframes)
    capped = len(uniform) > room
    uniform = _spread(uniform, room) if capped else uniform
    scene_of = _scene_index(scenes)
    frames = [(i, keyframes[i], True) for i in keyframes] + [(i, scene_of(i), False) for i in uniform]
    return FramePlan(tuple(sorted(frames)), capped=capped)


def _spread(indices: list[int], count: int) -> list[int]:
    """``count`` of ``indices``, evenly spread (first and last included when count > 1)."""
    if count <= 0:
        return []
    if count >= len(indices):
        return list(indices)
    if count == 1:
        return [indices[len(indices) // 2]]
    return [indices[round(k * (len(indices) - 1) / (count - 1))] for k in range(count)]


def _scene_index(scenes: list[tuple[int, int]]):
    starts = [start for start, _ in scenes]

    def scene_of(index: int) -> int:
        return int(np.searchsorted(starts, index, side="right")) - 1

    return scene_of
