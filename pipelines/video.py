"""``curate video``: videos -> scenes, sampled frames, dense frame captions, a summary and QA pairs.

The recipe: read (video files matching a glob) -> decode (each video in a child
process with a time and a memory limit: ``corrupt_video``, ``no_video_stream``,
``decode_timeout``, ``decode_memory`` are its dead letters; shot boundaries, keyframes
plus uniform frames under an fps cap, near-duplicate frames dropped; each video fans
out into its frames, whose funnel is ``extra.frame_funnel``: frame_dedup -> frame_quality)
-> video_dedup (identical files) -> plan_budget (frames that could never fit the
sequence budget are thinned away before anyone pays to describe them) [stage
``frames``] -> captions (the generator describes each frame, or a window of frames per
request, with its time) -> summary_qa (a summary and QA pairs from the timestamped
descriptions) -> budget (the exact token count: thinned, routed or dropped, as
configured) -> route (samples over the budget go whole to ``OUTPUT/long/``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curation.budgets import FailureBudgets, StepBudget
from curation.config import ConfigError
from curation.ids import content_id
from curation.models.generator import GeneratorSpec, generator_sees_images
from curation.records import Reject, VideoClip, VideoFrame, reject
from curation.tokens import TextTokenizer, TokenSettings
from curation.video_budget import BudgetSettings, clip_tokens, fixed_text, frame_line, frame_visual_tokens, thin
from curation.video_decode import VideoRejected, VideoSettings, decode_isolated, drop_near_duplicates
from filters.video_frames import BlankFrameFilter
from manifests.samples import video_sample
from manifests.shards import ShardSettings
from pipelines.executor import runner
from pipelines.io import ReadFiles
from pipelines.recipe import (
    Checkpoint, Dedup, FanOut, Filter, Map, Model, Read, Recipe, Route, Samples, keep_first, model_entry, without,
)
from pipelines.registry import GENERATOR_FLAGS, Flag, PipelineCommand, check_generator_flags
from synth.qa import QAPromptTemplate, QASettings
from synth.video_text import (
    DEFAULT_VIDEO_QA_PROMPT, FrameCaptionSettings, FramePromptTemplate, SummaryPromptTemplate, SummarySettings,
)

LONG = "long"
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoFilters:
    """The frame judgments; ``null`` switches one off."""

    blank: BlankFrameFilter | None = BlankFrameFilter()


@dataclass(frozen=True)
class VideoConfig:
    """Everything ``curate video`` can be told; every key can be set in YAML or with ``--set``.

    The generator (``--generator-model``: a local transformers vision-language model;
    ``--generator-endpoint``: an OpenAI-compatible server that takes images) describes the
    frames and writes summaries and QA. Without one (``generator: null``, the default) a run
    samples frames only, and the manifest says so: run ``--stop-after frames`` on CPU workers,
    then ``--resume-from frames`` with a generator where it is served. ``seed`` fixes every
    generation.
    """

    dataset: str = "video"
    video: VideoSettings = VideoSettings()
    filters: VideoFilters = VideoFilters()
    generator: GeneratorSpec | None = None
    captions: FrameCaptionSettings = FrameCaptionSettings()
    summary: SummarySettings = SummarySettings()
    qa: QASettings = QASettings(prompt=DEFAULT_VIDEO_QA_PROMPT, min_transcription_words=8, max_transcription_chars=12000)
    budget: BudgetSettings = BudgetSettings()
    seed: int = 0
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()
    # thinning is a fallback the funnel counts (``thinned``), not a failure: any share of videos may be thinned
    budgets: FailureBudgets = FailureBudgets(steps={"plan_budget": StepBudget(fallback=1.0),
                                                    "budget": StepBudget(fallback=1.0)})


def _thinned(step: str):
    def fell_back(clip: VideoClip) -> str | None:
        return "thinned" if clip.meta.get("thinned", {}).get(step) else None

    return fell_back


# --------------------------------------------------------------------------- reading


def _video_file(path: str, settings: VideoSettings) -> Iterable[Any]:
    name = path.rsplit("/", 1)[-1]
    try:
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except Exception as error:  # an unreadable file is one dead letter
        yield Reject(id=content_id(path), source=name, step="read", reason="unreadable_file", dead_letter=True,
                     detail=repr(error)[:500])
        return
    if size > settings.max_file_bytes:
        yield Reject(id=content_id(path), source=name, step="read", reason="too_large", dead_letter=True,
                     detail=f"{size} bytes, over {settings.max_file_bytes}")
        return
    yield VideoClip(id=content_id(path), source=name, path=path, meta={"file": name, "bytes": size})


@contextmanager
def staged(path: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    """``(local path, sha256)`` of ``path``: a local file as it is, a remote one copied to a
    temporary file first (deleted afterwards); at most ``max_bytes`` are read."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
                digest.update(chunk)
        yield path, digest.hexdigest()
        return
    suffix = os.path.splitext(path)[1][:8]
    with tempfile.TemporaryDirectory(prefix="curate-video-") as directory:
        local = os.path.join(directory, f"video{suffix}")
        copied = 0
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as source, open(local, "wb") as out:
            while copied <= max_bytes and (chunk := source.read(_COPY_CHUNK)):
                digest.update(chunk)
                out.write(chunk)
                copied += len(chunk)
        if copied > max_bytes:
            raise VideoRejected("too_large", f"grew past {max_bytes} bytes while staging")
        yield local, digest.hexdigest()


def video_frames(clip: VideoClip, settings: VideoSettings) -> tuple[VideoClip, list]:
    """A video's facts and its planned frames (near-duplicates as ``frame_dedup`` rejects); raises
    :class:`curation.video_decode.VideoRejected` for a video that cannot be decoded."""
    with staged(clip.path, settings.max_file_bytes) as (local, sha256):
        decoded = decode_isolated(local, settings)
    kept, duplicates = drop_near_duplicates(decoded.frames, settings.scenes.duplicate_distance)

    def frame(decoded_frame: Any) -> VideoFrame:
        return VideoFrame(id=content_id(clip.id, str(decoded_frame.index)), source=f"{clip.source}@{decoded_frame.t:.3f}s",
                          t=decoded_frame.t, scene=decoded_frame.scene, image=decoded_frame.image,
                          keyframe=decoded_frame.keyframe)

    items: list[Any] = [frame(f) for f in kept]
    items += [reject(frame(f), "frame_dedup", "near_duplicate_frame", detail=f"repeats the frame at {twin.t:.3f}s")
              for f, twin in duplicates]
    meta = {**clip.meta, **decoded.meta, "scenes": decoded.scenes, "sha256": sha256}
    return dataclasses.replace(clip, meta=meta), items


def gather_frames(clip: VideoClip, frames: list[VideoFrame]) -> VideoClip | Reject:
    if not frames:
        return reject(clip, "decode", "no_frames", detail="every sampled frame was dropped")
    return dataclasses.replace(clip, frames=sorted(frames, key=lambda f: f.t))


# --------------------------------------------------------------------------- the budget


class FitBudget:
    """A Map step's function: fits each video into ``settings.max_tokens``.

    ``estimate``: before captioning, each frame's description counts as
    ``settings.caption_tokens`` and the summary and QA as ``settings.text_tokens``; only
    thinning happens then (``over: thin``), so no frame that could never fit is described.
    Otherwise the exact count decides: a sample that fits is kept; one over the budget is
    thinned, routed (``meta["route"]``) or dropped (``over_budget``) as ``settings.over`` says.
    """

    def __init__(self, settings: BudgetSettings, tokens: TokenSettings, step: str, estimate: bool = False):
        self._settings = settings
        self._tokens = tokens
        self._step = step
        self._estimate = estimate

    def setup(self) -> None:
        self._tokenizer = TextTokenizer.load(self._tokens.text_tokenizer)

    def _cost(self, frame: VideoFrame) -> int:
        visual = frame_visual_tokens(frame, self._tokens.image_resolution)
        if self._estimate:
            return visual + self._settings.caption_tokens
        return visual + (self._tokenizer.count(frame_line(frame)) if frame.caption else 0)

    def __call__(self, clip: VideoClip) -> VideoClip | Reject:
        settings = self._settings
        fixed = settings.text_tokens if self._estimate else self._tokenizer.count(fixed_text(clip))
        kept = thin(clip.frames, self._cost, fixed, settings.max_tokens)
        fits = kept is not None and len(kept) == len(clip.frames)
        if self._estimate:
            return clip if fits or kept is None else self._thinned(clip, kept)
        if fits:
            return self._counted(clip)
        if settings.over == "thin" and kept is not None:
            return self._counted(self._thinned(clip, kept))
        if settings.over == "drop":
            total = clip_tokens(clip, self._tokenizer, self._tokens.image_resolution)["total"]
            return reject(clip, self._step, "over_budget", detail=f"{total} tokens over {settings.max_tokens}")
        return self._counted(dataclasses.replace(clip, meta={**clip.meta, "route": LONG}))

    def _thinned(self, clip: VideoClip, kept: list[VideoFrame]) -> VideoClip:
        thinned = {**clip.meta.get("thinned", {}), self._step: len(clip.frames) - len(kept)}
        return dataclasses.replace(clip, frames=kept, meta={**clip.meta, "thinned": thinned})

    def _counted(self, clip: VideoClip) -> VideoClip:
        tokens = clip_tokens(clip, self._tokenizer, self._tokens.image_resolution)
        return dataclasses.replace(clip, meta={**clip.meta, "tokens": tokens})


def _routed(clip: VideoClip) -> str | None:
    return clip.meta.get("route")


# --------------------------------------------------------------------------- models


def _described(clip: VideoClip) -> VideoClip | Reject:
    """A video keeps its described frames; one with none is a ``no_captions`` dead letter."""
    frames = [frame for frame in clip.frames if frame.caption]
    if not frames:
        reasons = clip.meta.get("captions", {}).get("reasons", {})
        return reject(clip, "captions", "no_captions", dead_letter=True, detail=f"no frame was described: {reasons}")
    return dataclasses.replace(clip, frames=frames)


def _some_undescribed(clip: VideoClip) -> str | None:
    return "frames_undescribed" if clip.meta.get("captions", {}).get("failed_windows") else None


def _no_summary(clip: VideoClip) -> str | None:
    return None if clip.summary else "no_summary"


def _has_text(clip: VideoClip) -> bool:
    return bool(clip.summary or clip.qa)


def _caption_step(config: VideoConfig) -> Model | None:
    if config.generator is None:
        return None
    from pipelines.models import FrameCaptionHandler  # imports the generator's libraries: only when it runs

    spec = config.generator
    template = FramePromptTemplate.load(config.captions.prompt, opener=FileSystems.open)
    settings = {k: v for k, v in spec.describe().items() if k != "model"}
    entry = model_entry(spec, "frame_captioner", **settings, prompt=template.id, window=config.captions.window,
                        note="dense descriptions of each sampled frame, with its time")
    return Model(name="captions", handler=FrameCaptionHandler(spec, template, config.captions, config.seed),
                 entry=entry, then=_described, fallback=_some_undescribed, stage="captions")


def _text_step(config: VideoConfig) -> Model | None:
    if config.generator is None:
        return None
    from pipelines.models import VideoTextHandler

    spec = config.generator
    prompts = (SummaryPromptTemplate.load(config.summary.prompt, opener=FileSystems.open),
               QAPromptTemplate.load(config.qa.prompt, opener=FileSystems.open))
    settings = {k: v for k, v in spec.describe().items() if k != "model"}
    entry = model_entry(spec, "summary_qa_writer", **settings, prompt=f"{prompts[0].id}+{prompts[1].id}",
                        note="a summary and question-answer pairs written from the timestamped frame descriptions")
    handler = VideoTextHandler(spec, prompts, (config.summary, config.qa), config.seed)
    return Model(name="summary_qa", handler=handler, entry=entry, fallback=_no_summary, carried=_has_text)


def check_generator_sees_images(config: VideoConfig) -> None:
    """Refuses, before any worker starts, a generator that cannot see the frames it is to describe."""
    spec = config.generator
    if spec is not None and not generator_sees_images(spec, opener=FileSystems.open):
        raise ConfigError(f"generator {spec.model!r} is a text-only model: curate video describes frames, so it "
                          "needs a vision-language model or an endpoint that takes images")


# --------------------------------------------------------------------------- the recipe


def recipe(config: VideoConfig) -> Recipe:
    """The video recipe."""
    budget = config.budget
    blank = config.filters.blank
    frame_steps = (Filter(name="frame_quality", filter=blank),) if blank else ()
    return Recipe(
        record_type=VideoClip,
        steps=without([
            Read(source=lambda glob: ReadFiles(glob, _video_file, config.video)),
            FanOut(name="decode", item_step="frame_dedup", explode=lambda clip: video_frames(clip, config.video),
                   steps=frame_steps, gather=gather_frames, funnel_key="frame_funnel"),
            Dedup(name="video_dedup", key=lambda clip: clip.meta["sha256"], choose=keep_first(lambda clip: clip.source),
                  detail=lambda kept: f"same file as {kept.source}"),
            Map(name="plan_budget", fn=FitBudget(budget, config.tokens, "plan_budget", estimate=True),
                fallback=_thinned("plan_budget")) if budget.over == "thin" else None,
            Checkpoint(name="frames"),
            _caption_step(config),
            _text_step(config),
            Map(name="budget", fn=FitBudget(budget, config.tokens, "budget"), fallback=_thinned("budget")),
            Route(name="route", choose=_routed, destinations=(LONG,)) if budget.over != "drop" else None,
        ]),
        output=Samples(video_sample, config.tokens),
        config=config,
        switched_off={} if config.generator else {"captions": "a generator (--generator-model or --generator-endpoint)"},
        notes=() if config.generator else ("no generator was configured: the frames carry no descriptions, and the "
                                           "videos no summary or QA pairs",),
    )


run = runner(recipe)


COMMAND = PipelineCommand(
    name="video",
    help="videos -> scenes and sampled frames, dense frame captions, a summary and QA pairs within a token budget",
    description="Read videos (any Beam filesystem glob; remote files are staged to local disk) and decode each in a "
    "child process with a wall-clock and memory limit (video.timeout_seconds, video.memory_mb): decord, or PyAV for "
    "what decord cannot open; rotation metadata applied. Corrupt, truncated, audio-only and hanging files are dead "
    "letters (corrupt_video, no_video_stream, decode_timeout, decode_memory) and the other videos go on. Find hard "
    "cuts, sample each scene's keyframe plus frames under video.scenes.fps_cap, drop near-duplicate (pHash) and "
    "blank frames, resize frames into the recipe's resolution band. The generator (--generator-model: a local "
    "transformers vision-language model; --generator-endpoint: an OpenAI-compatible server, several images per "
    "request with captions.window > 1) describes each frame with its time, then writes a summary and QA pairs "
    "grounded in those descriptions. A sample over --max-tokens (visual tokens per frame + text tokens) is thinned "
    "to fewer frames keeping every scene, or routed whole to OUTPUT/long/ (budget.over: thin, route or drop). "
    "Writes OUTPUT/shards/*.tar (<key>.<n>.jpg frames, txt = timestamped descriptions, json = file, duration, fps, "
    "width, height, scenes, frames, summary, qa, tokens), OUTPUT/manifest.json (videos funnel; the frames' funnel "
    "under extra.frame_funnel), OUTPUT/rejects/*.parquet and OUTPUT/long/. Stages: frames, captions.",
    config=VideoConfig,
    recipe=recipe,
    flags=(
        Flag("--max-tokens", "the most tokens one sample may cost (visual + text)", key="budget.max_tokens",
             metavar="N", value_type=int),
        *GENERATOR_FLAGS,
    ),
    check=check_generator_flags,
    before_run=check_generator_sees_images,
)
