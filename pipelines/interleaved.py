"""``curate interleaved``: Common Crawl WARCs -> interleaved image-text documents in webdataset shards.

Page funnel steps: read -> extract -> url_dedup -> language -> text_quality ->
page_dedup -> images -> clip_score. Image references have their own funnel
(``extra.image_funnel`` in the manifest): image_url -> image_cap -> image_fetch
-> image_decode -> image_quality -> image_dedup.

Stages (``--stop-after``/``--resume-from``): ``extract`` (pages as extracted,
before any filter), ``text_quality``, ``page_dedup``, ``images`` (pages with
their images resolved, deduplicated and attached: the step after the expensive
fetches) and ``clip_score`` (scored and reordered). A stage writes
``DIR/stages/STAGE/pages-*.parquet`` (pages, image bytes left out) and
``DIR/stages/STAGE/images-*.parquet`` (each image once). Every run from the WARCs
writes the ``images`` stage, and the ``clip_score`` stage (scored and reordered,
before the CLIP filter) when CLIP runs, so a later run can resume from them, e.g.
with another threshold; a run first deletes the stage tables it is about to write.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton, TaggedOutput

from curation.config import ConfigError, to_mapping
from curation.fetch import Fetcher, FetchSettings
from curation.images import ImageRejected, ImageSettings, normalize_image
from curation.minhash import MinHashSettings
from curation.models.clip import ClipSpec
from curation.records import IMAGE_TYPE, ImageData, InterleavedDoc, Reject, from_row, reject, to_row
from curation.tokens import TokenSettings
from curation.warc import WarcFailure, iter_warc
from curation.web_pages import (
    PageSettings,
    attach_images,
    failure_reject,
    is_image_response,
    newest_capture,
    page_from_response,
    select_image_refs,
)
from filters.clip_score import ClipScoreFilter
from filters.image_dedup import ImageDedupSettings, canonical_in_bucket, phash_band_keys
from filters.image_quality import ImageQualityFilter
from filters.image_url import ImageUrlFilter
from filters.language import LanguageFilter
from filters.web_text import TextRules, WebTextQualityFilter, filter_paragraphs
from manifests.manifest import build_funnel
from manifests.samples import interleaved_sample
from manifests.shards import ShardSettings
from pipelines.dedup import NearDedup
from pipelines.io import ManifestHeader, MatchPaths, WriteDataset, split_rejects
from pipelines.transforms import REJECTS, ApplyFilter, FilterClipScore, ToSamples, count_drop

STEPS = ("read", "extract", "url_dedup", "language", "text_quality", "page_dedup", "images", "clip_score")
IMAGE_STEPS = ("image_url", "image_cap", "image_fetch", "image_decode", "image_quality", "image_dedup")
STAGES = ("extract", "text_quality", "page_dedup", "images", "clip_score")
RESUMABLE = ("images", "clip_score")
IMAGE_EVENTS = "image_events"
IMAGE_SCHEMA = pa.schema(list(IMAGE_TYPE))


@dataclass(frozen=True)
class InterleavedFilters:
    """The judgments of the pipeline, each with its own defaults (OBELICS, Gopher, FineWeb)."""

    paragraphs: TextRules = TextRules()
    text: WebTextQualityFilter = WebTextQualityFilter()
    language: LanguageFilter = LanguageFilter()
    image_url: ImageUrlFilter = ImageUrlFilter()
    image: ImageQualityFilter = ImageQualityFilter(min_side=150, max_aspect=2.0)
    clip: ClipScoreFilter = ClipScoreFilter(threshold=0.2)


@dataclass(frozen=True)
class ImageFetchSettings:
    """Where image bytes come from when the WARC holds no response record for them.

    Attributes:
        fetch_missing: fetch them with the safe fetcher; when false they are dropped as ``not_in_warc``.
        concurrency: parallel fetch threads per worker process.
        batch_size: image URLs handed to the thread pool at a time.
    """

    fetch_missing: bool = True
    concurrency: int = 32
    batch_size: int = 64


@dataclass(frozen=True)
class InterleavedConfig:
    """Everything ``curate interleaved`` can be told; every key can be set in YAML or with ``--set``.

    ``score_clip: false`` skips the CLIP model: no page score, no reordering.
    """

    dataset: str = "interleaved"
    score_clip: bool = True
    pages: PageSettings = PageSettings()
    filters: InterleavedFilters = InterleavedFilters()
    page_dedup: MinHashSettings = MinHashSettings()
    image_dedup: ImageDedupSettings = ImageDedupSettings()
    download: ImageFetchSettings = ImageFetchSettings()
    fetch: FetchSettings = FetchSettings()
    image: ImageSettings = ImageSettings()
    clip: ClipSpec = ClipSpec()
    reorder_margin: float = 0.0
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()


# --------------------------------------------------------------------------- read and extract


def _read_warc(path: str, settings: PageSettings) -> Iterable[Any]:
    """Pages (or their rejects) on the main output, image payloads as ``(url, bytes)`` on ``images``."""
    name = path.rsplit("/", 1)[-1]
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for item in iter_warc(handle, name):
                if isinstance(item, WarcFailure):
                    count_drop("read", item.reason)
                    yield failure_reject(item)
                elif is_image_response(item):
                    if not item.truncated:  # a cut-short image is useless: another capture or a fetch serves it
                        yield TaggedOutput("images", (item.url, item.body))
                else:
                    page = page_from_response(item, name, settings)
                    if isinstance(page, Reject):
                        count_drop(page.step, page.reason)
                    yield page
    except Exception as error:  # an unopenable file is one dead letter
        yield Reject(id=name, source=path, step="read", reason="unreadable_file", dead_letter=True,
                     detail=repr(error)[:500])


class ReadWarcPages(beam.PTransform):
    """Reads every WARC matching a glob, files in parallel; returns ``(pages and rejects, image payloads)``."""

    def __init__(self, pattern: str, settings: PageSettings):
        super().__init__()
        self._pattern = pattern
        self._settings = settings

    def expand(self, pipeline: beam.Pipeline):
        return (
            pipeline
            | "Match" >> MatchPaths(self._pattern)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadWarc" >> beam.FlatMap(_read_warc, self._settings).with_outputs("images", main="pages")
        )


# --------------------------------------------------------------------------- page steps


def _keep_newest(item: tuple[str, Iterable[InterleavedDoc]]) -> Iterable[Any]:
    newest, older = newest_capture(list(item[1]))
    yield newest
    for doc in older:
        count_drop("url_dedup", "older_capture")
        yield TaggedOutput(REJECTS, reject(doc, "url_dedup", "older_capture", detail=f"kept {newest.id}"))


def _clean_paragraphs(doc: InterleavedDoc, rules: TextRules) -> Iterable[Any]:
    segments, dropped = filter_paragraphs(doc.segments, rules)
    stats = {**doc.stats, **{f"paragraphs.{reason}": float(n) for reason, n in dropped.items()}}
    cleaned = dataclasses.replace(doc, segments=segments, stats=stats)
    if not cleaned.text.strip():
        count_drop("text_quality", "no_text_left")
        yield TaggedOutput(REJECTS, reject(cleaned, "text_quality", "no_text_left"))
    else:
        yield cleaned


# --------------------------------------------------------------------------- images


def _select_refs(doc: InterleavedDoc, url_filter: ImageUrlFilter, max_images: int) -> Iterable[Any]:
    selected, events = select_image_refs(doc, url_filter.judge, max_images)
    for event in events:
        yield TaggedOutput(IMAGE_EVENTS, event)
    yield selected


class ResolveImageBytes(beam.DoFn):
    """Per distinct image URL: bytes from the WARC, else fetched; then decoded and judged.

    Input: ``(url, {"pages": [page ids], "bytes": [payloads]})`` batches. Output:
    ``(url, pages, ImageData | (step, reason))``.
    """

    def __init__(self, config: InterleavedConfig):
        self._config = config

    def setup(self) -> None:
        self._fetcher = Fetcher(self._config.fetch)
        self._pool = ThreadPoolExecutor(self._config.download.concurrency, thread_name_prefix="image-fetch")

    def teardown(self) -> None:
        self._pool.shutdown(wait=False)
        self._fetcher.close()

    def _resolve(self, item: tuple[str, dict[str, list]]) -> tuple[str, list[str], Any]:
        url, joined = item
        pages = sorted(set(joined["pages"]))
        payloads = sorted(joined["bytes"])
        if payloads:
            data = payloads[0]
        elif not self._config.download.fetch_missing:
            return url, pages, ("image_fetch", "not_in_warc")
        else:
            result = self._fetcher.fetch(url)
            if not result.ok:
                return url, pages, ("image_fetch", result.reason)
            data = result.content
        try:
            image = normalize_image(data, self._config.image)
        except ImageRejected as error:
            return url, pages, ("image_decode", error.reason)
        quality = self._config.filters.image
        kept, reason = quality.keep(quality.score(image))
        if not kept:
            return url, pages, ("image_quality", reason)
        return url, pages, image

    def process(self, batch: list[tuple[str, dict[str, list]]]) -> Iterable[tuple[str, list[str], Any]]:
        referenced = [item for item in batch if item[1]["pages"]]  # WARC images no page points at are skipped
        yield from self._pool.map(self._resolve, referenced)


def _by_sha(item: tuple[str, Iterable[tuple[str, list[str], ImageData]]]) -> tuple[str, dict[str, Any]]:
    sha, copies = item
    copies = sorted(copies, key=lambda c: c[0])
    return sha, {
        "image": copies[0][2],
        "refs": [(url, pages) for url, pages, _ in copies],
        "pages": sorted({page for _, pages, _ in copies for page in pages}),
    }


def _canonical_outcomes(item: tuple[str, Iterable[tuple[str, dict]]], settings: ImageDedupSettings) -> Iterable[Any]:
    """One canonical image and its copies -> ``(page id, (url, outcome))`` for every reference."""
    canonical_sha, members = item
    members = sorted(members, key=lambda m: m[0])
    images = {sha: info["image"] for sha, info in members}
    canonical = images.get(canonical_sha) or images[members[0][0]]  # a one-hop chain may point outside
    pages = {page for _, info in members for page in info["pages"]}
    outcome: Any = ("image_dedup", "on_too_many_pages") if settings.too_common(len(pages)) else canonical
    for _, info in members:
        for url, url_pages in info["refs"]:
            for page in url_pages:
                yield page, (url, outcome)


class DedupImages(beam.PTransform):
    """Merges exact and perceptual copies corpus-wide and drops images on too many pages.

    Input: ``(url, pages, ImageData)``. Output: ``(page id, (url, canonical ImageData | (step, reason)))``.
    """

    def __init__(self, settings: ImageDedupSettings):
        super().__init__()
        self._settings = settings

    def expand(self, resolved: beam.PCollection) -> beam.PCollection:
        settings = self._settings
        by_sha = (
            resolved
            | "KeyBySha" >> beam.Map(lambda r: (r[2].sha256, r))
            | "GroupExactCopies" >> beam.GroupByKey()
            | "MergeExactCopies" >> beam.Map(_by_sha)
        )
        canonical = (
            by_sha
            | "PhashBands"
            >> beam.FlatMap(
                lambda kv: [(key, (kv[0], kv[1]["image"].phash))
                            for key in phash_band_keys(kv[1]["image"].phash, settings.max_distance)]
            )
            | "GroupBands" >> beam.GroupByKey()
            | "NearestInBucket" >> beam.FlatMap(lambda kv: canonical_in_bucket(list(kv[1]), settings.max_distance))
            | "SmallestCanonical" >> beam.CombinePerKey(min)
        )
        return (
            {"info": by_sha, "canonical": canonical}
            | "JoinCanonical" >> beam.CoGroupByKey()
            | "KeyByCanonical"
            >> beam.Map(lambda kv: (min(kv[1]["canonical"], default=kv[0]), (kv[0], kv[1]["info"][0])))
            | "GroupCopies" >> beam.GroupByKey()
            | "Outcomes" >> beam.FlatMap(_canonical_outcomes, settings)
        )


def _attach(item: tuple[str, dict[str, list]]) -> Iterable[Any]:
    _, joined = item
    for doc in joined["doc"]:
        outcomes = dict(joined["outcome"])
        attached, events = attach_images(doc, outcomes)
        for event in events:
            yield TaggedOutput(IMAGE_EVENTS, event)
        if not attached.images:
            count_drop("images", "no_images_left")
            yield TaggedOutput(REJECTS, reject(attached, "images", "no_images_left"))
        else:
            yield attached


def _route_resolved(item: tuple[str, list[str], Any]) -> Iterable[Any]:
    url, pages, outcome = item
    if isinstance(outcome, ImageData):
        yield item
    else:
        for page in pages:
            yield TaggedOutput("failed", (page, (url, outcome)))


class AttachImages(beam.PTransform):
    """Resolves, judges and deduplicates every image reference, then puts the bytes into the pages.

    Input: pages with image URLs, and ``(url, bytes)`` image payloads from the WARCs.
    Output: ``(pages, rejects, image events, image references in)``, the last a singleton count.
    """

    def __init__(self, config: InterleavedConfig):
        super().__init__()
        self._config = config

    def expand(self, pcolls: dict[str, beam.PCollection]):
        config = self._config
        selected = pcolls["pages"] | "SelectImageRefs" >> beam.FlatMap(
            _select_refs, config.filters.image_url, config.pages.max_images_per_page
        ).with_outputs(IMAGE_EVENTS, main="pages")
        pages = selected.pages
        refs = pages | "ImageRefs" >> beam.FlatMap(
            lambda d: [(s.image_url, d.id) for s in d.segments if s.kind == "image"]
        )
        resolved = (
            {"pages": refs, "bytes": pcolls["payloads"]}
            | "JoinPayloads" >> beam.CoGroupByKey()
            | "BatchImages" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.download.batch_size)
            | "ResolveImages" >> beam.ParDo(ResolveImageBytes(config))
            | "RouteResolved" >> beam.FlatMap(_route_resolved).with_outputs("failed", main="ok")
        )
        outcomes = (resolved.ok | "DedupImages" >> DedupImages(config.image_dedup), resolved.failed) | (
            "AllOutcomes" >> beam.Flatten()
        )
        attached = (
            {"doc": pages | "KeyPages" >> beam.Map(lambda d: (d.id, d)), "outcome": outcomes}
            | "JoinOutcomes" >> beam.CoGroupByKey()
            | "Attach" >> beam.FlatMap(_attach).with_outputs(REJECTS, IMAGE_EVENTS, main="pages")
        )
        events = (selected[IMAGE_EVENTS], attached[IMAGE_EVENTS]) | "AllImageEvents" >> beam.Flatten()
        refs_in = (
            pcolls["pages"]
            | "ImageRefsPerPage" >> beam.Map(lambda d: d.image_count)
            | "ImageRefsIn" >> beam.CombineGlobally(sum)
        )
        return attached.pages, attached[REJECTS], events, refs_in


class ImageFunnel(beam.PTransform):
    """The image funnel: references in, and dropped per ``(step, reason)``, as manifest funnel steps.

    Input: ``{"refs_in": a singleton count, "events": (step, reason) per dropped reference}``.
    """

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        dropped = (
            pcolls["events"]
            | "EventKey" >> beam.Map(lambda e: (tuple(e), 1))
            | "CountEvents" >> beam.CombinePerKey(sum)
            | "EventsToList" >> beam.combiners.ToList()
        )
        return (
            pcolls["refs_in"].pipeline
            | "ImageFunnelSeed" >> beam.Create([None])
            | "BuildImageFunnel"
            >> beam.Map(
                lambda _, n, counts: [s.to_dict() for s in build_funnel(IMAGE_STEPS, n, dict(counts))],
                AsSingleton(pcolls["refs_in"]),
                AsSingleton(dropped),
            )
        )


# --------------------------------------------------------------------------- CLIP, stages, output


class _ScorePages(beam.PTransform):
    """CLIP page scores and reordering (the ``clip_score`` stage holds their output, before the filter)."""

    def __init__(self, config: InterleavedConfig):
        super().__init__()
        self._config = config

    def expand(self, pages: beam.PCollection):
        from pipelines.models import ClipPageHandler, RunModel  # imports torch: only when CLIP runs

        handler = ClipPageHandler(self._config.clip, self._config.reorder_margin)
        return pages | "RunClip" >> RunModel(handler, step="clip_score")


def stages_written(config: InterleavedConfig, stop_after: str | None, resume_from: str | None) -> list[str]:
    """The stage tables a run writes: ``stop_after``'s, ``images`` on a run from the WARCs, and
    ``clip_score`` when CLIP runs."""
    last = STAGES.index(stop_after) if stop_after else len(STAGES)
    written = [stop_after] if stop_after in ("extract", "text_quality", "page_dedup") else []
    if resume_from is None and last >= STAGES.index("images"):
        written.append("images")
    if config.score_clip and resume_from != "clip_score" and last >= STAGES.index("clip_score"):
        written.append("clip_score")
    return written


def _clear_stages(output_dir: str, stages: list[str]) -> None:
    """Deletes stage tables an earlier run left, so a later resume never reads two runs' files."""
    for stage in stages:
        directory = FileSystems.join(output_dir, "stages", stage)
        if FileSystems.exists(directory):
            FileSystems.delete([directory])


def check_stages(config: InterleavedConfig, stop_after: str | None, resume_from: str | None) -> None:
    """Refuses stage options that cannot mean anything; raises ``ConfigError`` naming the problem."""
    if resume_from is not None and resume_from not in RESUMABLE:
        raise ConfigError(f"--resume-from takes one of {', '.join(RESUMABLE)}, got {resume_from!r}")
    if stop_after is not None and stop_after not in STAGES:
        raise ConfigError(f"--stop-after takes one of {', '.join(STAGES)}, got {stop_after!r}")
    if stop_after and resume_from and STAGES.index(stop_after) <= STAGES.index(resume_from):
        raise ConfigError(f"--stop-after {stop_after} comes before --resume-from {resume_from}")
    if stop_after == "clip_score" and not config.score_clip:
        raise ConfigError("--stop-after clip_score needs score_clip: true")
    if resume_from == "clip_score" and not config.score_clip:
        raise ConfigError("--resume-from clip_score needs score_clip: true (the stage holds CLIP scores to filter on)")


def _stage_prefix(output_dir: str, stage: str, table: str) -> str:
    return FileSystems.join(output_dir, "stages", stage, table)


def _unique_image(item: tuple[str, Iterable[ImageData]]) -> dict[str, Any]:
    return dataclasses.asdict(next(iter(item[1])))


class WriteStage(beam.PTransform):
    """Writes a stage's pages (image bytes left out) and its images (each once) as Parquet."""

    def __init__(self, output_dir: str, stage: str):
        super().__init__()
        self._output_dir = output_dir
        self._stage = stage

    def expand(self, pages: beam.PCollection) -> beam.PCollection:
        rows = pages | "PageRows" >> beam.Map(lambda d: to_row(dataclasses.replace(d, images=[])))
        _ = rows | "WritePages" >> beam.io.WriteToParquet(
            _stage_prefix(self._output_dir, self._stage, "pages"), schema=InterleavedDoc.SCHEMA,
            file_name_suffix=".parquet",
        )
        return (
            pages
            | "StageImages" >> beam.FlatMap(lambda d: [(image.sha256, image) for image in d.images])
            | "GroupImages" >> beam.GroupByKey()
            | "ImageRows" >> beam.Map(_unique_image)
            | "WriteImages" >> beam.io.WriteToParquet(
                _stage_prefix(self._output_dir, self._stage, "images"), schema=IMAGE_SCHEMA,
                file_name_suffix=".parquet",
            )
        )


def _with_images(item: tuple[str, dict[str, list]]) -> Iterable[Any]:
    """A stage page with its images back in place, or a ``read`` dead letter when its stage lost one."""
    _, joined = item
    images = {image.sha256: image for image in joined["image"]}
    for doc in joined["doc"]:
        wanted = list(dict.fromkeys(s.image_sha256 for s in doc.segments if s.kind == "image"))
        missing = [sha for sha in wanted if sha not in images]
        if missing:
            count_drop("read", "stage_image_missing")
            yield reject(doc, "read", "stage_image_missing", dead_letter=True, detail=", ".join(missing))
        else:
            yield dataclasses.replace(doc, images=[images[sha] for sha in wanted])


class ReadStage(beam.PTransform):
    """Reads a stage written by :class:`WriteStage` back into pages with their images; a page whose
    images the stage lacks comes out as a ``read`` dead letter instead."""

    def __init__(self, output_dir: str, stage: str):
        super().__init__()
        self._output_dir = output_dir
        self._stage = stage

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        pages = pipeline | "ReadPages" >> beam.io.ReadFromParquet(
            _stage_prefix(self._output_dir, self._stage, "pages") + "*.parquet"
        ) | "PageRecords" >> beam.Map(lambda row: from_row(InterleavedDoc, row))
        images = pipeline | "ReadImages" >> beam.io.ReadFromParquet(
            _stage_prefix(self._output_dir, self._stage, "images") + "*.parquet"
        ) | "ImageRecords" >> beam.Map(lambda row: ImageData(**row))
        wanted = pages | "WantedImages" >> beam.FlatMap(
            lambda d: [(s.image_sha256, d.id) for s in d.segments if s.kind == "image"]
        )
        per_page = (
            {"page": wanted, "image": images | "KeyImages" >> beam.Map(lambda i: (i.sha256, i))}
            | "JoinImages" >> beam.CoGroupByKey()
            | "ImagePerPage" >> beam.FlatMap(lambda kv: [(page, image) for page in kv[1]["page"] for image in kv[1]["image"][:1]])
        )
        return (
            {"doc": pages | "KeyPages" >> beam.Map(lambda d: (d.id, d)), "image": per_page}
            | "JoinPages" >> beam.CoGroupByKey()
            | "RebuildPages" >> beam.FlatMap(_with_images)
        )


def _page_steps(
    pages: beam.PCollection, config: InterleavedConfig, rejects: list, output_dir: str, stop_after: str | None
) -> beam.PCollection | None:
    """URL dedup, language (the text rules are English-tuned), paragraph and page text quality,
    MinHash page dedup; None when stopped at ``text_quality``."""
    newest = (
        pages
        | "KeyByUrl" >> beam.Map(lambda d: (d.url, d))
        | "GroupCaptures" >> beam.GroupByKey()
        | "KeepNewestCapture" >> beam.FlatMap(_keep_newest).with_outputs(REJECTS, main="kept")
    )
    language = newest.kept | "Language" >> ApplyFilter(config.filters.language, step="language")
    cleaned = language.kept | "CleanParagraphs" >> beam.FlatMap(
        _clean_paragraphs, config.filters.paragraphs
    ).with_outputs(REJECTS, main="kept")
    judged = cleaned.kept | "TextQuality" >> ApplyFilter(config.filters.text, step="text_quality")
    rejects.extend([newest[REJECTS], language.rejects, cleaned[REJECTS], judged.rejects])
    if _write_stage(judged.kept, output_dir, "text_quality", stop_after):
        return None
    deduped = judged.kept | "PageDedup" >> NearDedup(config.page_dedup, step="page_dedup")
    rejects.append(deduped[REJECTS])
    return deduped.kept


def build(
    pipeline: beam.Pipeline,
    input_glob: str,
    output_dir: str,
    config: InterleavedConfig,
    stop_after: str | None = None,
    resume_from: str | None = None,
) -> None:
    """Adds the interleaved pipeline to ``pipeline``.

    Args:
        stop_after: write this stage's tables and stop (no shards, no manifest).
        resume_from: read this stage's tables from ``output_dir`` instead of the WARCs.
    """
    check_stages(config, stop_after, resume_from)
    rejects: list[beam.PCollection] = []
    image_counts = None
    if resume_from is None:
        read = pipeline | "Read" >> ReadWarcPages(input_glob, config.pages)
        inputs = read.pages
        pages, read_rejects = split_rejects(read.pages, "SplitReadRejects")
        rejects.append(read_rejects)
        if _write_stage(pages, output_dir, "extract", stop_after):
            return
        pages = _page_steps(pages, config, rejects, output_dir, stop_after)
        if pages is None or _write_stage(pages, output_dir, "page_dedup", stop_after):
            return
        pages, image_rejects, events, refs_in = {"pages": pages, "payloads": read.images} | "Images" >> AttachImages(config)
        rejects.append(image_rejects)
        image_counts = {"refs_in": refs_in, "events": events}
        _ = pages | "WriteImagesStage" >> WriteStage(output_dir, "images")
        if stop_after == "images":
            return
        steps = STEPS
    else:
        resumed = pipeline | "Resume" >> ReadStage(output_dir, resume_from)
        inputs = resumed
        pages, stage_rejects = split_rejects(resumed, "SplitStageRejects")
        rejects.append(stage_rejects)
        steps = ("read", *STEPS[STEPS.index(resume_from) + (0 if resume_from == "clip_score" else 1) :])
    if config.score_clip:
        if resume_from != "clip_score":
            scored = pages | "ClipScorePages" >> _ScorePages(config)
            rejects.append(scored.rejects)
            pages = scored.kept
            _ = pages | "WriteClipStage" >> WriteStage(output_dir, "clip_score")
            if stop_after == "clip_score":
                return
        judged = pages | "FilterClipScore" >> FilterClipScore(config.filters.clip)
        pages = judged.kept
        rejects.append(judged.rejects)
    _write_outputs(pipeline, pages, inputs, rejects, image_counts, output_dir, config, steps)


def _write_stage(pages: beam.PCollection, output_dir: str, stage: str, stop_after: str | None) -> bool:
    if stop_after != stage:
        return False
    _ = pages | f"WriteStage_{stage}" >> WriteStage(output_dir, stage)
    return True


def _write_outputs(
    pipeline: beam.Pipeline,
    pages: beam.PCollection,
    inputs: beam.PCollection,
    rejects: list[beam.PCollection],
    image_counts: dict[str, beam.PCollection] | None,
    output_dir: str,
    config: InterleavedConfig,
    steps: tuple[str, ...],
) -> None:
    models = (
        ({"name": config.clip.model, "role": "clip", "weights": config.clip.weights_source()},)
        if config.score_clip
        else ()
    )
    header = ManifestHeader(dataset=config.dataset, config=to_mapping(config), models=models, steps=steps)
    outputs = {
        "samples": pages | "ToSamples" >> beam.ParDo(ToSamples(config.tokens, interleaved_sample)),
        "inputs": inputs,
        "rejects": rejects | "AllRejects" >> beam.Flatten() if rejects else pipeline | "NoRejects" >> beam.Create([]),
    }
    if image_counts is not None:
        outputs["extra"] = image_counts | "ImageFunnel" >> ImageFunnel() | "AsExtra" >> beam.Map(
            lambda funnel: {"image_funnel": funnel}
        )
    _ = outputs | "WriteDataset" >> WriteDataset(output_dir, header, config.shards)


def run(
    input_glob: str,
    output_dir: str,
    config: InterleavedConfig,
    beam_args: list[str],
    stop_after: str | None = None,
    resume_from: str | None = None,
) -> bool:
    """Builds and runs the interleaved pipeline with runner options from ``beam_args``.

    Returns:
        False when the runner only translated the job (``--dry_run=True``), True when it ran.
    """
    options = PipelineOptions(beam_args)
    dry_run = bool(options.get_all_options().get("dry_run"))
    check_stages(config, stop_after, resume_from)
    if not dry_run:
        _clear_stages(output_dir, stages_written(config, stop_after, resume_from))
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, input_glob, output_dir, config, stop_after, resume_from)
    return not dry_run
