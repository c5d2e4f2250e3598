"""``curate interleaved``: Common Crawl WARCs -> interleaved image-text documents in webdataset shards.

The recipe: read (and extract) [stage ``extract``] -> url_dedup -> language ->
text_quality (paragraphs, then the page) [stage ``text_quality``] -> page_dedup
[stage ``page_dedup``] -> images [stage ``images``, every run] -> clip_score (CLIP
scores and reordering [stage ``clip_score``, every run with CLIP], then the score
filter). Image references have their own funnel (``extra.image_funnel`` in the
manifest): image_url -> image_cap -> image_fetch -> image_decode -> image_quality
-> image_nsfw (open_nsfw, each distinct URL once) -> image_dedup.

A stage writes ``DIR/stages/STAGE/pages-*.parquet`` (pages, image bytes left out)
and ``DIR/stages/STAGE/images-*.parquet`` (each image once). ``images`` and
``clip_score`` can be resumed from (e.g. with another CLIP threshold); the
earlier stages are for looking at, since the images step needs the image records
read from the WARCs.
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
from apache_beam.pvalue import TaggedOutput

from curation.budgets import FailureBudgets
from curation.fetch import OPTED_OUT, Fetcher, FetchSettings
from curation.images import ImageRejected, ImageSettings, normalize_image
from curation.minhash import MinHashSettings
from curation.models.clip import ClipSpec
from curation.models.nsfw import NsfwSpec
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
from filters.image_dedup import ImageDedupSettings, PhashSimilarity, phash_band_keys
from filters.image_quality import ImageQualityFilter
from filters.image_url import ImageUrlFilter
from filters.language import LanguageFilter
from filters.nsfw import NsfwFilter
from filters.web_text import TextRules, WebTextQualityFilter, filter_paragraphs
from manifests.samples import interleaved_sample
from manifests.shards import ShardSettings
from pipelines.dedup import GreedyDedup
from pipelines.executor import runner
from pipelines.registry import CLIP_FLAGS, PipelineCommand, check_clip_weights
from pipelines.io import MatchPaths
from pipelines.recipe import (
    Checkpoint, Corpus, Dedup, Filter, Map, Model, Read, Recipe, Samples, Step, StepOutput, model_entry, without,
)
from pipelines.transforms import REJECTS

IMAGE_STEPS = ("image_url", "image_cap", "image_fetch", "image_decode", "image_quality", "image_nsfw", "image_dedup")
IMAGE_EVENTS = "image_events"
IMAGE_PAYLOADS = "image_payloads"
IMAGE_SCHEMA = pa.schema(list(IMAGE_TYPE))


@dataclass(frozen=True)
class InterleavedFilters:
    """The judgments of the pipeline, each with its own defaults (OBELICS, Gopher, FineWeb);
    ``null`` switches one off."""

    paragraphs: TextRules | None = TextRules()
    text: WebTextQualityFilter | None = WebTextQualityFilter()
    language: LanguageFilter | None = LanguageFilter()
    image_url: ImageUrlFilter | None = ImageUrlFilter()
    image: ImageQualityFilter | None = ImageQualityFilter(min_side=150, max_aspect=2.0)
    nsfw: NsfwFilter | None = NsfwFilter()
    clip: ClipScoreFilter | None = ClipScoreFilter(threshold=0.2)


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
    nsfw: NsfwSpec = NsfwSpec()
    clip: ClipSpec = ClipSpec()
    reorder_margin: float = 0.0
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()
    budgets: FailureBudgets = FailureBudgets()


# --------------------------------------------------------------------------- read and extract


def _read_warc(path: str, settings: PageSettings) -> Iterable[Any]:
    """Pages (or their rejects) on the main output, image payloads as ``(url, bytes)`` on ``images``."""
    name = path.rsplit("/", 1)[-1]
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for item in iter_warc(handle, name):
                if isinstance(item, WarcFailure):
                    yield failure_reject(item)
                elif is_image_response(item):
                    if not item.truncated:  # a cut-short image is useless: another capture or a fetch serves it
                        yield TaggedOutput("images", (item.url, item.body))
                else:
                    yield page_from_response(item, name, settings)
    except Exception as error:  # an unopenable file is one dead letter
        yield Reject(id=name, source=path, step="read", reason="unreadable_file", dead_letter=True,
                     detail=repr(error)[:500])


class ReadWarcPages(beam.PTransform):
    """Reads every WARC matching a glob, files in parallel; returns ``{"records": pages and rejects,
    "image_payloads": (url, bytes) of the image records}``."""

    def __init__(self, pattern: str, settings: PageSettings):
        super().__init__()
        self._pattern = pattern
        self._settings = settings

    def expand(self, pipeline: beam.Pipeline) -> dict[str, beam.PCollection]:
        read = (
            pipeline
            | "Match" >> MatchPaths(self._pattern)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadWarc" >> beam.FlatMap(_read_warc, self._settings).with_outputs("images", main="pages")
        )
        return {"records": read.pages, IMAGE_PAYLOADS: read.images}


# --------------------------------------------------------------------------- page steps


def _clean_paragraphs(doc: InterleavedDoc, rules: TextRules) -> InterleavedDoc | Reject:
    segments, dropped = filter_paragraphs(doc.segments, rules)
    stats = {**doc.stats, **{f"paragraphs.{reason}": float(n) for reason, n in dropped.items()}}
    cleaned = dataclasses.replace(doc, segments=segments, stats=stats)
    if not cleaned.text.strip():
        return reject(cleaned, "text_quality", "no_text_left")
    return cleaned


# --------------------------------------------------------------------------- images


def _any_url(url: str) -> tuple[bool, None]:
    return True, None


def _select_refs(doc: InterleavedDoc, url_filter: ImageUrlFilter | None, max_images: int) -> Iterable[Any]:
    selected, events = select_image_refs(doc, url_filter.judge if url_filter else _any_url, max_images)
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
        if quality is not None:
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
    canonical = {sha: info["image"] for sha, info in members}[canonical_sha]  # a canonical image is its own
    pages = {page for _, info in members for page in info["pages"]}
    outcome: Any = ("image_dedup", "on_too_many_pages") if settings.too_common(len(pages)) else canonical
    for _, info in members:
        for url, url_pages in info["refs"]:
            for page in url_pages:
                yield page, (url, outcome)


class DedupImages(beam.PTransform):
    """Merges exact and perceptual copies corpus-wide and drops images on too many pages.

    A near copy becomes the smallest canonical image within ``max_distance`` of it, by the
    rule of :class:`pipelines.dedup.GreedyDedup` (:mod:`filters.image_dedup`).

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
        canonical = (  # (sha256, canonical sha256) of every near copy that is not canonical itself
            by_sha
            | "PhashBands"
            >> beam.Map(lambda kv: (kv[0], kv[1]["image"].phash,
                                    phash_band_keys(kv[1]["image"].phash, settings.max_distance)))
            | "NearCopies" >> GreedyDedup(PhashSimilarity(settings.max_distance))
        )
        return (
            {"info": by_sha, "canonical": canonical}
            | "JoinCanonical" >> beam.CoGroupByKey()
            | "KeyByCanonical"
            >> beam.Map(lambda kv: (min(kv[1]["canonical"], default=kv[0]), (kv[0], kv[1]["info"][0])))
            | "GroupCopies" >> beam.GroupByKey()
            | "Outcomes" >> beam.FlatMap(_canonical_outcomes, settings)
        )


def _with_failure_flag(event: tuple[str, str]) -> tuple[str, str, bool]:
    """An image event as ``(step, reason, dead_letter)``: a fetch, a decode or a safety score
    that failed is a failure (held to the failure budget); an image the WARC lacks with
    fetching off, one its creator opted out of, or one the safety filter judged, is not."""
    step, reason = event
    failed = step in ("image_fetch", "image_decode") and reason not in ("not_in_warc", OPTED_OUT)
    return step, reason, failed or (step == "image_nsfw" and reason != "nsfw")


def _attach(item: tuple[str, dict[str, list]]) -> Iterable[Any]:
    _, joined = item
    for doc in joined["doc"]:
        outcomes = dict(joined["outcome"])
        attached, events = attach_images(doc, outcomes)
        for event in events:
            yield TaggedOutput(IMAGE_EVENTS, _with_failure_flag(event))
        if not attached.images:
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


def _image_bytes(resolved: tuple[str, list[str], ImageData]) -> bytes:
    return resolved[2].data


def _judge_nsfw(item: tuple[tuple[str, list[str], ImageData], Any], judge: NsfwFilter) -> Iterable[Any]:
    """A scored image on the main output if the safety filter keeps it, else
    ``(page, (url, ("image_nsfw", reason)))`` per page on ``failed``."""
    (url, pages, image), score = item
    if isinstance(score, Exception):
        reason = "nsfw_unreadable"
    else:
        reason = judge.keep(score)[1]
    if reason is None:
        yield url, pages, image
    else:
        for page in pages:
            yield TaggedOutput("failed", (page, (url, ("image_nsfw", reason))))


def _failed_nsfw_batch(failure: tuple[Any, Any]) -> Iterable[Any]:
    batch, _ = failure
    for url, pages, _ in batch if isinstance(batch, list) else [batch]:
        for page in pages:
            yield page, (url, ("image_nsfw", "batch_error"))


class ScoreImageSafety(beam.PTransform):
    """The ``image_nsfw`` item step: open_nsfw over resolved images, each URL once, in batches.

    Input: ``(url, pages, ImageData)``. Output: ``{"ok": the kept ones, "failed": (page, (url,
    ("image_nsfw", reason)))}``: ``nsfw`` for a judged image, ``nsfw_unreadable`` and
    ``batch_error`` for failures.
    """

    def __init__(self, step: Model):
        super().__init__()
        self._step = step

    def expand(self, resolved: beam.PCollection) -> dict[str, beam.PCollection]:
        from apache_beam.ml.inference.base import RunInference  # imports the model libraries: only when it runs

        scored, failures = resolved | "Infer" >> RunInference(self._step.handler).with_exception_handling()
        judged = scored | "Judge" >> beam.FlatMap(_judge_nsfw, self._step.judge).with_outputs("failed", main="ok")
        failed_batches = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_nsfw_batch)
        failed = (judged.failed, failed_batches) | "AllFailed" >> beam.Flatten()
        return {"ok": judged.ok, "failed": failed}


class AttachImages(beam.PTransform):
    """Resolves, judges and deduplicates every image reference, then puts the bytes into the pages.

    Input: ``{"records": pages with image URLs, "image_payloads": (url, bytes) from the WARCs}``.
    Output: a :class:`StepOutput` whose items are the image references. ``nsfw``, when given,
    is the safety model step (``image_nsfw``) run on the resolved images before deduplication.
    """

    def __init__(self, config: InterleavedConfig, nsfw: Model | None = None):
        super().__init__()
        self._config = config
        self._nsfw = nsfw

    def expand(self, pcolls: dict[str, beam.PCollection]):
        config = self._config
        selected = pcolls["records"] | "SelectImageRefs" >> beam.FlatMap(
            _select_refs, config.filters.image_url, config.pages.max_images_per_page
        ).with_outputs(IMAGE_EVENTS, main="pages")
        pages = selected.pages
        refs = pages | "ImageRefs" >> beam.FlatMap(
            lambda d: [(s.image_url, d.id) for s in d.segments if s.kind == "image"]
        )
        resolved = (
            {"pages": refs, "bytes": pcolls[IMAGE_PAYLOADS]}
            | "JoinPayloads" >> beam.CoGroupByKey()
            | "BatchImages" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.download.batch_size)
            | "ResolveImages" >> beam.ParDo(ResolveImageBytes(config))
            | "RouteResolved" >> beam.FlatMap(_route_resolved).with_outputs("failed", main="ok")
        )
        ok, failed = resolved.ok, [resolved.failed]
        if self._nsfw is not None:
            safe = ok | "ImageNsfw" >> ScoreImageSafety(self._nsfw)
            ok = safe["ok"]
            failed.append(safe["failed"])
        outcomes = (ok | "DedupImages" >> DedupImages(config.image_dedup), *failed) | "AllOutcomes" >> beam.Flatten()
        attached = (
            {"doc": pages | "KeyPages" >> beam.Map(lambda d: (d.id, d)), "outcome": outcomes}
            | "JoinOutcomes" >> beam.CoGroupByKey()
            | "Attach" >> beam.FlatMap(_attach).with_outputs(REJECTS, IMAGE_EVENTS, main="pages")
        )
        events = (selected[IMAGE_EVENTS], attached[IMAGE_EVENTS]) | "AllImageEvents" >> beam.Flatten()
        refs_in = (
            pcolls["records"]
            | "ImageRefsPerPage" >> beam.Map(lambda d: d.image_count)
            | "ImageRefsIn" >> beam.CombineGlobally(sum)
        )
        return StepOutput(attached.pages, attached[REJECTS], events, refs_in)


# --------------------------------------------------------------------------- stage tables


def _unique_image(item: tuple[str, Iterable[ImageData]]) -> dict[str, Any]:
    return dataclasses.asdict(next(iter(item[1])))


class _WritePages(beam.PTransform):
    """Writes pages (image bytes left out) and their images (each once) as Parquet tables."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, pages: beam.PCollection) -> beam.PCollection:
        rows = pages | "PageRows" >> beam.Map(lambda d: to_row(dataclasses.replace(d, images=[])))
        _ = rows | "WritePages" >> beam.io.WriteToParquet(
            FileSystems.join(self._directory, "pages"), schema=InterleavedDoc.SCHEMA, file_name_suffix=".parquet",
        )
        return (
            pages
            | "StageImages" >> beam.FlatMap(lambda d: [(image.sha256, image) for image in d.images])
            | "GroupImages" >> beam.GroupByKey()
            | "ImageRows" >> beam.Map(_unique_image)
            | "WriteImages" >> beam.io.WriteToParquet(
                FileSystems.join(self._directory, "images"), schema=IMAGE_SCHEMA, file_name_suffix=".parquet",
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
            yield reject(doc, "read", "stage_image_missing", dead_letter=True, detail=", ".join(missing))
        else:
            yield dataclasses.replace(doc, images=[images[sha] for sha in wanted])


class _ReadPages(beam.PTransform):
    """Reads pages written by :class:`_WritePages` back with their images; a page whose
    images the stage lacks comes out as a ``read`` dead letter instead."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        pages = pipeline | "ReadPages" >> beam.io.ReadFromParquet(
            FileSystems.join(self._directory, "pages") + "*.parquet"
        ) | "PageRecords" >> beam.Map(lambda row: from_row(InterleavedDoc, row))
        images = pipeline | "ReadImages" >> beam.io.ReadFromParquet(
            FileSystems.join(self._directory, "images") + "*.parquet"
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


class PageTables:
    """Interleaved stages as two tables: pages without image bytes, and each image once."""

    def write(self, directory: str) -> beam.PTransform:
        return _WritePages(directory)

    def read(self, directory: str) -> beam.PTransform:
        return _ReadPages(directory)


# --------------------------------------------------------------------------- the recipe


def _text_quality_step(filters: InterleavedFilters) -> Step | None:
    """Paragraph rules, then the page rules, in one funnel step (either may be switched off)."""
    rules = filters.paragraphs
    clean = (lambda doc: _clean_paragraphs(doc, rules)) if rules else None
    if filters.text is not None:
        return Filter(name="text_quality", filter=filters.text, prepare=clean)
    return Map(name="text_quality", fn=clean) if clean else None


def _clip_step(config: InterleavedConfig) -> Model | None:
    """CLIP page scores and reordering [stage ``clip_score``], then the score filter."""
    if not config.score_clip:
        return None
    from pipelines.models import ClipPageHandler  # imports torch: only when CLIP runs

    return Model(
        name="clip_score", handler=ClipPageHandler(config.clip, config.reorder_margin),
        entry=model_entry(config.clip, "clip"), stage="clip_score", stage_always=True, judge=config.filters.clip,
    )


def _image_nsfw_step(config: InterleavedConfig) -> Model | None:
    """open_nsfw on each resolved image, then the safety filter: an item step of ``images``."""
    if config.filters.nsfw is None:
        return None
    from pipelines.models import NsfwHandler  # imports the model libraries: only when it runs

    return Model(name="image_nsfw", handler=NsfwHandler(config.nsfw, image=_image_bytes),
                 entry=model_entry(config.nsfw, "safety"), judge=config.filters.nsfw)


def recipe(config: InterleavedConfig) -> Recipe:
    filters, pages = config.filters, config.pages
    nsfw = _image_nsfw_step(config)
    return Recipe(
        record_type=InterleavedDoc,
        steps=without([
            Read(source=lambda glob: ReadWarcPages(glob, pages), also=("extract",), sides=(IMAGE_PAYLOADS,)),
            Checkpoint(name="extract"),
            Dedup(name="url_dedup", key=lambda d: d.url, choose=newest_capture, reason="older_capture",
                  detail=lambda kept: f"kept {kept.id}"),
            Filter(name="language", filter=filters.language) if filters.language else None,
            _text_quality_step(filters),
            Checkpoint(name="text_quality"),
            Dedup(name="page_dedup", minhash=config.page_dedup),
            Checkpoint(name="page_dedup"),
            Corpus(name="images", transform=AttachImages(config, nsfw), sides=(IMAGE_PAYLOADS,),
                   item_steps=IMAGE_STEPS if nsfw else tuple(s for s in IMAGE_STEPS if s != "image_nsfw"),
                   funnel_key="image_funnel", models=(nsfw,) if nsfw else ()),
            Checkpoint(name="images", always=True),
            _clip_step(config),
        ]),
        output=Samples(interleaved_sample, config.tokens),
        config=config,
        switched_off={} if config.score_clip else {"clip_score": "score_clip: true"},
        tables=PageTables(),
    )


run = runner(recipe)


COMMAND = PipelineCommand(
    name="interleaved",
    help="Common Crawl WARCs -> interleaved image-text pages, deduplicated, CLIP-scored, reordered",
    description="Read WARC files (.warc, multi-member .warc.gz; any Beam filesystem glob), extract each "
    "HTML page's main content as text and images in reading order, keep the newest capture of a URL, "
    "drop bad paragraphs and pages (OBELICS and Gopher rules, language ID), drop near-duplicate pages "
    "(MinHash LSH), resolve image bytes from the WARC's image records or the safe fetcher, filter images "
    "(quality, open_nsfw safety) and deduplicate them corpus-wide (exact, perceptual, too many pages), score each page with CLIP, "
    "move images in front of better-matching earlier sentences, and write OUTPUT/shards/*.tar, "
    "OUTPUT/manifest.json (with an image funnel), OUTPUT/rejects/*.parquet and the resumable stage "
    "tables OUTPUT/stages/{images,clip_score}/. Stages: extract (before any filter), text_quality, "
    "page_dedup, images and clip_score; the last two can be resumed from.",
    config=InterleavedConfig,
    recipe=recipe,
    flags=CLIP_FLAGS,
    before_run=check_clip_weights,
)
