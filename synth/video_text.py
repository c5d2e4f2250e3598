"""Dense frame captions and summaries of videos, by a generator, checked and retried.

* :func:`caption_windows` describes the sampled frames of videos: one request per window
  of ``window`` consecutive frames (their images and times; one frame per request by
  default), answered with one numbered line per frame (:func:`parse_frame_lines`). Each
  line passes the shared output checks (:mod:`filters.caption_checks`: length, refusal,
  repetition) or the window is tried again with another seed, then left undescribed.
* :func:`write_summaries` writes one summary per video from its timestamped descriptions
  (``VideoClip.text``), under the same checks and retries.

QA pairs about a video are :func:`synth.qa.write_qa` over the same descriptions, with the
``video_qa_v1`` prompt: the answers are held to the grounding check against them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from curation.models.generator import GenerationRequest
from filters.caption_checks import CaptionLengthCheck, CaptionRefusalCheck, CaptionRepetitionCheck
from synth.captions import PromptTemplate, pair_seed, retry_seed
from synth.qa import shared_check, truncate_transcription

DEFAULT_CAPTION_PROMPT = "video_frame_caption_v1"
DEFAULT_SUMMARY_PROMPT = "video_summary_v1"
DEFAULT_VIDEO_QA_PROMPT = "video_qa_v1"
UNPARSABLE = "frames_unparsable"
_NUMBERED = re.compile(r"^\s*(?:frame\s*)?(\d+)\s*[:.)\-]\s*(.+?)\s*$", re.IGNORECASE)


class FramePromptTemplate(PromptTemplate):
    """A versioned frame-caption prompt: ``user`` holds ``{timestamps}`` and ``{n_frames}``."""

    placeholder: ClassVar[str] = "{timestamps}"

    def render(self, times: Sequence[float]) -> tuple[str, str]:  # type: ignore[override]
        """The ``(system, user)`` messages for frames at ``times`` (seconds)."""
        stamps = "\n".join(f"{n}: {t:.1f} s" for n, t in enumerate(times, start=1))
        user = self.user.strip().replace("{n_frames}", str(len(times))).replace(self.placeholder, stamps)
        return self.system.strip(), user


class SummaryPromptTemplate(PromptTemplate):
    """A versioned summary prompt: ``user`` holds ``{descriptions}``."""

    placeholder: ClassVar[str] = "{descriptions}"

    def render(self, descriptions: str) -> tuple[str, str]:  # type: ignore[override]
        return self.system.strip(), self.user.strip().replace(self.placeholder, descriptions)


@dataclass(frozen=True)
class FrameCaptionSettings:
    """How frames are described (config section ``captions``).

    Attributes:
        prompt: the prompt's id or a YAML path.
        window: frames per request (1: each frame alone; more: a short window in one request,
            which a server that takes several images answers in one go).
        min_words: fewest words of a frame's description.
        max_words: most words of a frame's description.
        max_attempts: generations per window, the first included.
    """

    prompt: str = DEFAULT_CAPTION_PROMPT
    window: int = 1
    min_words: int = 3
    max_words: int = 80
    max_attempts: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.window <= 16 or self.max_attempts < 1 or not 1 <= self.min_words <= self.max_words:
            raise ValueError("captions: window within 1..16, max_attempts >= 1, 1 <= min_words <= max_words")


@dataclass(frozen=True)
class SummarySettings:
    """How summaries are written (config section ``summary``).

    Attributes:
        prompt: the prompt's id or a YAML path.
        min_words: fewest words of a summary.
        max_words: most words of a summary.
        max_description_chars: the descriptions sent are cut to this many characters.
        max_attempts: generations per video, the first included.
    """

    prompt: str = DEFAULT_SUMMARY_PROMPT
    min_words: int = 5
    max_words: int = 200
    max_description_chars: int = 12000
    max_attempts: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or not 1 <= self.min_words <= self.max_words or self.max_description_chars < 100:
            raise ValueError("summary: max_attempts >= 1, 1 <= min_words <= max_words, max_description_chars >= 100")


@dataclass(frozen=True)
class Window:
    """Frames described in one request: their images and times, in order, and a stable id."""

    id: str
    images: tuple[bytes, ...]
    times: tuple[float, ...]


@dataclass(frozen=True)
class Generated:
    """What a window or a video got: ``texts`` (one per frame, or the one summary) or the
    ``reason`` there are none, after ``attempts`` generations (``failures``: why each failed)."""

    texts: tuple[str, ...] = ()
    reason: str | None = None
    attempts: int = 0
    failures: tuple[str, ...] = ()


def parse_frame_lines(text: str, count: int) -> list[str]:
    """One description per frame from a generation: lines ``N: text`` for N = 1..count.

    A single frame may also be described by the whole text. Lines for numbers past
    ``count`` are ignored; a missing number is a failure.

    Raises:
        ValueError: when a frame has no line.
    """
    found: dict[int, str] = {}
    for line in text.splitlines():
        match = _NUMBERED.match(line)
        if match and 1 <= int(match[1]) <= count:
            found.setdefault(int(match[1]), " ".join(match[2].split()))
    if count == 1 and 1 not in found and text.strip():
        found[1] = " ".join(text.split())
    missing = [n for n in range(1, count + 1) if n not in found]
    if missing:
        raise ValueError(f"no line for frame {missing[0]}")
    return [found[n] for n in range(1, count + 1)]


def _checks(min_words: int, max_words: int) -> list[Any]:
    length = CaptionLengthCheck(min_words=min_words, max_words=max_words, min_length_ratio=0.0)
    return [length, CaptionRefusalCheck(), CaptionRepetitionCheck()]


def _first_failure(checks: list[Any], text: str, prefix: str) -> str | None:
    return next((reason for check in checks if (reason := shared_check(check, text, "", prefix))), None)


def generate_checked(
    ids: Sequence[str],
    request: Callable[[int, int], GenerationRequest],
    judge: Callable[[int, Any], tuple[tuple[str, ...] | None, str | None]],
    generate: Callable[[list[GenerationRequest]], list[Any]],
    max_attempts: int,
) -> list[Generated]:
    """Generates for each item until ``judge`` accepts or ``max_attempts`` ran out.

    Each round sends every pending item at once. Args: ``request(i, attempt)`` builds item
    ``i``'s request; ``judge(i, result)`` gives ``(texts, None)`` or ``(None, reason)``.
    """
    outcomes: list[Generated | None] = [None] * len(ids)
    failures: list[list[str]] = [[] for _ in ids]
    pending = list(range(len(ids)))
    attempt = 0
    while pending:
        still = []
        for i, result in zip(pending, generate([request(i, attempt) for i in pending])):
            texts, reason = judge(i, result)
            if texts is not None:
                outcomes[i] = Generated(texts, None, attempt + 1, tuple(failures[i]))
                continue
            failures[i].append(reason or "failed")
            if attempt + 1 < max_attempts:
                still.append(i)
            else:
                outcomes[i] = Generated((), failures[i][-1], attempt + 1, tuple(failures[i]))
        pending = still
        attempt += 1
    return outcomes  # type: ignore[return-value]  # every slot is filled above


def caption_windows(
    windows: Sequence[Window],
    generate: Callable[[list[GenerationRequest]], list[Any]],
    template: FramePromptTemplate,
    settings: FrameCaptionSettings,
    seed: int = 0,
) -> list[Generated]:
    """One description per frame of each window (``texts`` in frame order), or the reason none.

    A failed generation keeps its reason (``timeout``, ``http_500`` ...); a reply without a
    line per frame is ``frames_unparsable``; a line that fails a check names it
    (``frame_too_short``, ``frame_refusal`` ...).
    """
    checks = _checks(settings.min_words, settings.max_words)

    def request(i: int, attempt: int) -> GenerationRequest:
        window = windows[i]
        system, user = template.render(window.times)
        return GenerationRequest(user, system, window.images, retry_seed(pair_seed(seed, window.id), attempt))

    def judge(i: int, result: Any) -> tuple[tuple[str, ...] | None, str | None]:
        if not result.ok:
            return None, result.reason
        try:
            lines = parse_frame_lines(result.text, len(windows[i].images))
        except ValueError:
            return None, UNPARSABLE
        failed = next((reason for line in lines if (reason := _first_failure(checks, line, "frame"))), None)
        return (None, failed) if failed else (tuple(lines), None)

    return generate_checked([w.id for w in windows], request, judge, generate, settings.max_attempts)


def write_summaries(
    items: Sequence[tuple[str, str]],
    generate: Callable[[list[GenerationRequest]], list[Any]],
    template: SummaryPromptTemplate,
    settings: SummarySettings,
    seed: int = 0,
) -> list[Generated]:
    """One checked summary per ``(video id, timestamped descriptions)``, or the reason none."""
    checks = _checks(settings.min_words, settings.max_words)

    def request(i: int, attempt: int) -> GenerationRequest:
        text, _ = truncate_transcription(items[i][1], settings.max_description_chars)
        system, user = template.render(text)
        return GenerationRequest(user, system, seed=retry_seed(pair_seed(seed, items[i][0]), attempt))

    def judge(i: int, result: Any) -> tuple[tuple[str, ...] | None, str | None]:
        if not result.ok:
            return None, result.reason
        text = " ".join(result.text.split())
        failed = _first_failure(checks, text, "summary")
        return (None, failed) if failed else ((text,), None)

    return generate_checked([item_id for item_id, _ in items], request, judge, generate, settings.max_attempts)
