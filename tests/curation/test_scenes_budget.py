"""Shot boundaries, the frame plan and the token budget: pure functions on made-up frames."""

import numpy as np
import pytest

from curation.records import ImageData, VideoFrame
from curation.scenes import CutDetector, SceneSettings, plan_frames
from curation.video_budget import BudgetSettings, thin


def solid(rgb, noise=0, seed=0, size=(36, 64)):
    frame = np.empty((*size, 3), dtype=np.int16)
    frame[...] = rgb
    if noise:
        frame += np.random.default_rng(seed).integers(-noise, noise + 1, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def detect(frames, fps=10.0, **settings):
    detector = CutDetector(fps, SceneSettings(**settings))
    for frame in frames:
        detector.feed(frame)
    return detector


def test_hard_cuts_are_found_at_their_frame_and_noise_is_not_a_cut():
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 40)]
    lengths = [12, 7, 20, 9]
    frames = [solid(c, noise=12, seed=i * 100 + j) for i, (c, n) in enumerate(zip(colours, lengths)) for j in range(n)]
    detector = detect(frames)
    assert detector.cuts == [12, 19, 39]
    assert detector.scenes() == [(0, 12), (12, 19), (19, 39), (39, 48)]


def test_a_flash_shorter_than_the_shortest_scene_is_one_cut_not_two():
    frames = [solid((20, 20, 20))] * 10 + [solid((250, 250, 250))] + [solid((20, 20, 20))] * 10
    assert detect(frames, min_scene_seconds=0.5).cuts == [10]


def test_a_steadily_changing_shot_does_not_cut_at_every_frame():
    # a slow pan: every frame differs from the last by about the same amount
    frames = [solid((min(255, 40 + 6 * i), 80, 120)) for i in range(30)]
    assert detect(frames, threshold=0.01).cuts == []


def test_plan_takes_each_scenes_middle_frame_and_uniform_frames_under_the_fps_cap():
    scenes = [(0, 20), (20, 35), (35, 65)]  # 2 s, 1.5 s, 3 s at 10 fps
    plan = plan_frames(scenes, 10.0, SceneSettings(fps_cap=1.0))
    keyframes = [index for index, _, key in plan.frames if key]
    assert keyframes == [9, 27, 49]
    uniform = [index for index, _, key in plan.frames if not key]
    assert uniform == [0, 10, 20, 30, 40, 50, 60]
    assert [scene for index, scene, _ in plan.frames] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert not plan.capped


def test_plan_keeps_keyframes_first_when_capped():
    scenes = [(i * 10, i * 10 + 10) for i in range(6)]
    plan = plan_frames(scenes, 10.0, SceneSettings(fps_cap=2.0, max_frames=8))
    assert plan.capped and len(plan.frames) == 8
    assert sum(key for _, _, key in plan.frames) == 6
    too_many = plan_frames([(i, i + 1) for i in range(20)], 10.0, SceneSettings(max_frames=5))
    assert too_many.capped and len(too_many.frames) == 5 and all(key for _, _, key in too_many.frames)


IMAGE = ImageData("0" * 64, "0" * 16, 64, 48, "jpeg", b"")


def frames(scenes_of):
    return [VideoFrame(str(i), "v", float(i), scene, IMAGE, keyframe=key) for i, (scene, key) in enumerate(scenes_of)]


def test_thin_keeps_every_scene_and_spreads_the_rest_within_the_budget():
    layout = [(0, True)] + [(0, False)] * 9 + [(1, True)] + [(1, False)] * 9
    video = frames(layout)
    kept = thin(video, cost=lambda f: 100, fixed=50, budget=1050)
    assert kept is not None and 50 + 100 * len(kept) <= 1050 and len(kept) == 10
    assert {f.scene for f in kept if f.keyframe} == {0, 1}
    times = [f.t for f in kept]
    assert times == sorted(times) and max(np.diff(times)) <= 4  # spread, not the first ten
    assert thin(video, cost=lambda f: 100, fixed=0, budget=5000) == video
    assert thin(video, cost=lambda f: 100, fixed=50, budget=150) is None  # two keyframes cannot fit


def test_budget_settings_refuse_unknown_policies():
    with pytest.raises(ValueError, match="budget.over"):
        BudgetSettings(over="truncate")
