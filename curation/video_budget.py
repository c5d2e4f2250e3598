"""A video sample's token cost, and fitting it into a sequence budget.

Tokens per sample = the visual tokens of every frame by the recipe's accounting
(:func:`curation.tokens.visual_tokens` at the run's resolution) + the text tokens of
the timestamped frame descriptions, the summary and the QA pairs. :func:`thin` drops
frames until a sample fits, keeping one keyframe per scene and spreading the other
frames evenly over time; when even the keyframes do not fit, the sample cannot be
thinned and goes whole to the long-context stage (or is dropped), as configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from curation.records import VideoClip, VideoFrame
from curation.tokens import TextTokenizer, visual_tokens

OVER_BUDGET = ("thin", "route", "drop")


@dataclass(frozen=True)
class BudgetSettings:
    """The sequence budget of one video sample (config section ``budget``).

    Attributes:
        max_tokens: the most tokens one sample in ``shards/`` may cost (``--max-tokens``).
        over: what happens to a sample over it: ``thin`` (fewer frames, every scene kept;
            routed when even that does not fit), ``route`` (whole, to ``long/`` for the
            long-context stage) or ``drop``.
        caption_tokens: tokens expected per frame description before the frames are
            described: frames that could never fit are thinned away before any is captioned.
        text_tokens: tokens expected for the summary and QA pairs before they are written.
    """

    max_tokens: int = 8192
    over: str = "thin"
    caption_tokens: int = 48
    text_tokens: int = 400

    def __post_init__(self) -> None:
        if self.over not in OVER_BUDGET:
            raise ValueError(f"budget.over must be one of {', '.join(OVER_BUDGET)}, got {self.over!r}")
        if self.max_tokens < 1 or self.caption_tokens < 0 or self.text_tokens < 0:
            raise ValueError("budget.max_tokens must be >= 1, caption_tokens and text_tokens >= 0")


def frame_line(frame: VideoFrame) -> str:
    """A frame's description as the sample's text holds it: ``[12.5s] ...``."""
    return f"[{frame.t:.1f}s] {frame.caption}"


def frame_visual_tokens(frame: VideoFrame, resolution: str) -> int:
    return visual_tokens(frame.image.width, frame.image.height, resolution)


def fixed_text(clip: VideoClip) -> str:
    """The text of a sample that does not belong to one frame: the summary and the QA pairs."""
    qa = "\n".join(f"{pair.question}\n{pair.answer}" for pair in clip.qa)
    return "\n".join(part for part in (clip.summary, qa) if part)


def clip_tokens(clip: VideoClip, tokenizer: TextTokenizer, resolution: str) -> dict[str, int]:
    """``{"visual", "text", "total"}`` tokens of a video sample."""
    visual = sum(frame_visual_tokens(frame, resolution) for frame in clip.frames)
    text = sum(tokenizer.count(frame_line(frame)) for frame in clip.frames if frame.caption)
    text += tokenizer.count(fixed_text(clip))
    return {"visual": visual, "text": text, "total": visual + text}


def _spread_order(count: int) -> list[int]:
    """0..count-1 in an order whose every prefix is spread evenly (bisection of the range)."""
    order: list[int] = []
    seen: set[int] = set()
    parts = 1
    while len(order) < count:
        for k in range(parts):
            index = min(count - 1, (2 * k + 1) * count // (2 * parts))
            if index not in seen:
                seen.add(index)
                order.append(index)
        parts *= 2
        if parts > 2 * count:
            order.extend(i for i in range(count) if i not in seen)
            break
    return order


def thin(frames: Sequence[VideoFrame], cost: Callable[[VideoFrame], int], fixed: int, budget: int) -> list[VideoFrame] | None:
    """The frames to keep so that ``fixed + sum(cost)`` fits ``budget``, in time order.

    Every keyframe stays (one per scene); the other frames are added in an evenly spread
    order while they fit. Returns ``frames`` unchanged when they already fit, and None
    when the keyframes alone do not.
    """
    total = fixed + sum(cost(frame) for frame in frames)
    if total <= budget:
        return list(frames)
    keys = [frame for frame in frames if frame.keyframe]
    used = fixed + sum(cost(frame) for frame in keys)
    if used > budget:
        return None
    others = [frame for frame in frames if not frame.keyframe]
    kept = {id(frame) for frame in keys}
    for index in _spread_order(len(others)):
        frame = others[index]
        if used + cost(frame) <= budget:
            used += cost(frame)
            kept.add(id(frame))
    return [frame for frame in frames if id(frame) in kept]
