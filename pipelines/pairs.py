"""``curate pairs``: LAION-style image-text parquet -> CLIP-filtered webdataset shards.

Stages (each one a funnel step): read -> caption -> dedup -> fetch -> decode ->
image_quality -> clip_score, then shards, rejects and the manifest.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from curation.config import to_mapping
from curation.fetch import Fetcher, FetchSettings
from curation.images import ImageRejected, ImageSettings, normalize_image
from curation.models.clip import ClipSpec
from curation.readers import PairColumns, pair_from_row
from curation.records import CaptionPair, reject
from curation.tokens import TokenSettings
from filters.caption import CaptionFilter
from filters.clip_score import ClipScoreFilter
from filters.image_quality import ImageQualityFilter
from manifests.samples import caption_pair_sample
from manifests.shards import ShardSettings
from pipelines.io import ManifestHeader, ReadParquetRecords, WriteDataset, split_rejects
from pipelines.transforms import REJECTS, ApplyFilter, FilterClipScore, ToSamples, count_drop

STEPS = ("read", "caption", "dedup", "fetch", "decode", "image_quality", "clip_score")


@dataclass(frozen=True)
class DownloadSettings:
    """How the fetch step batches its work.

    Attributes:
        concurrency: parallel fetch+decode threads per worker process.
        batch_size: records handed to the thread pool at a time.
    """

    concurrency: int = 32
    batch_size: int = 128


@dataclass(frozen=True)
class PairsFilters:
    caption: CaptionFilter = CaptionFilter()
    image: ImageQualityFilter = ImageQualityFilter()
    clip: ClipScoreFilter = ClipScoreFilter()


@dataclass(frozen=True)
class PairsConfig:
    """Everything ``curate pairs`` can be told; every key can be set in YAML or with ``--set``.

    ``score_clip: false`` skips the CLIP model and filter: a download-and-filter run,
    like img2dataset with quality filters.
    """

    dataset: str = "pairs"
    score_clip: bool = True
    columns: PairColumns = PairColumns()
    fetch: FetchSettings = FetchSettings()
    download: DownloadSettings = DownloadSettings()
    image: ImageSettings = ImageSettings()
    filters: PairsFilters = PairsFilters()
    clip: ClipSpec = ClipSpec()
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()


class FetchAndDecode(beam.DoFn):
    """Fetches each record's image and normalises it, on a thread pool per worker.

    Fetch failures leave as ``fetch`` rejects, undecodable images as ``decode``
    rejects; both are dead letters.
    """

    def __init__(self, fetch: FetchSettings, image: ImageSettings, concurrency: int):
        self._fetch_settings = fetch
        self._image_settings = image
        self._concurrency = concurrency

    def setup(self) -> None:
        self._fetcher = Fetcher(self._fetch_settings)
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="fetch")

    def teardown(self) -> None:
        self._pool.shutdown(wait=False)
        self._fetcher.close()

    def _fetch_one(self, record: CaptionPair) -> Any:
        result = self._fetcher.fetch(record.url)
        if not result.ok:
            return reject(record, "fetch", result.reason, dead_letter=True, detail=result.detail)
        try:
            image = normalize_image(result.content, self._image_settings)
        except ImageRejected as error:
            return reject(record, "decode", error.reason, dead_letter=True, detail=error.detail)
        return dataclasses.replace(record, image=image)

    def process(self, batch: list[CaptionPair]) -> Iterable[Any]:
        for outcome in self._pool.map(self._fetch_one, batch):
            if isinstance(outcome, CaptionPair):
                yield outcome
            else:
                count_drop(outcome.step, outcome.reason)
                yield TaggedOutput(REJECTS, outcome)


def _keep_first(item: tuple[str, Iterable[CaptionPair]]) -> Iterable[Any]:
    _, copies = item
    first, *rest = sorted(copies, key=lambda r: r.source)
    yield first
    for duplicate in rest:
        count_drop("dedup", "duplicate")
        yield TaggedOutput(REJECTS, reject(duplicate, "dedup", "duplicate", detail=f"same as {first.source}"))


def _score_and_filter_clip(records: beam.PCollection, config: PairsConfig) -> tuple[beam.PCollection, list]:
    from pipelines.models import ClipScoreHandler, RunModel  # imports torch: only when CLIP runs

    scored = records | "ClipScore" >> RunModel(ClipScoreHandler(config.clip), step="clip_score")
    judged = scored.kept | "FilterClipScore" >> FilterClipScore(config.filters.clip)
    return judged.kept, [scored.rejects, judged.rejects]


class DownloadPairs(beam.PTransform):
    """Reads caption pairs and brings them up to judged images: read -> caption -> dedup -> fetch ->
    decode -> image_quality.

    Shared by ``curate pairs`` and ``curate captions``: ``config`` needs ``columns``,
    ``filters.caption``, ``filters.image``, ``fetch``, ``download`` and ``image``.
    Output: ``{"inputs": every row read, "kept": pairs with images, "rejects": every reject so far}``.
    """

    def __init__(self, input_glob: str, config: Any):
        super().__init__()
        self._input_glob = input_glob
        self._config = config

    def expand(self, pipeline: beam.Pipeline) -> dict[str, beam.PCollection]:
        config = self._config
        rows = pipeline | "Read" >> ReadParquetRecords(
            self._input_glob, lambda row, source: pair_from_row(row, source, config.columns)
        )
        pairs, read_rejects = split_rejects(rows, "SplitReadRejects")
        captioned = pairs | "CaptionFilter" >> ApplyFilter(config.filters.caption)
        deduped = (
            captioned.kept
            | "KeyById" >> beam.Map(lambda r: (r.id, r))
            | "GroupCopies" >> beam.GroupByKey()
            | "KeepFirstCopy" >> beam.FlatMap(_keep_first).with_outputs(REJECTS, main="kept")
        )
        fetched = (
            deduped.kept
            | "BatchForFetch" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.download.batch_size)
            | "FetchAndDecode"
            >> beam.ParDo(FetchAndDecode(config.fetch, config.image, config.download.concurrency)).with_outputs(
                REJECTS, main="kept"
            )
        )
        sized = fetched.kept | "ImageQuality" >> ApplyFilter(config.filters.image)
        rejects = (
            read_rejects, captioned.rejects, deduped[REJECTS], fetched[REJECTS], sized.rejects
        ) | "DownloadRejects" >> beam.Flatten()
        return {"inputs": rows, "kept": sized.kept, "rejects": rejects}


def build(pipeline: beam.Pipeline, input_glob: str, output_dir: str, config: PairsConfig) -> None:
    """Adds the pairs pipeline to ``pipeline``."""
    downloaded = pipeline | "Download" >> DownloadPairs(input_glob, config)
    kept, rejects = downloaded["kept"], [downloaded["rejects"]]
    if config.score_clip:
        kept, clip_rejects = _score_and_filter_clip(kept, config)
        rejects.extend(clip_rejects)
    header = ManifestHeader(
        dataset=config.dataset,
        config=to_mapping(config),
        models=(
            ({"name": config.clip.model, "role": "clip", "weights": config.clip.weights_source()},)
            if config.score_clip
            else ()
        ),
        steps=STEPS,
    )
    _ = {
        "samples": kept | "ToSamples" >> beam.ParDo(ToSamples(config.tokens, caption_pair_sample)),
        "inputs": downloaded["inputs"],
        "rejects": rejects | "AllRejects" >> beam.Flatten(),
    } | "WriteDataset" >> WriteDataset(output_dir, header, config.shards)


def run(input_glob: str, output_dir: str, config: PairsConfig, beam_args: list[str]) -> bool:
    """Builds and runs the pairs pipeline with runner options from ``beam_args``.

    Returns:
        False when the runner only translated the job (``--dry_run=True``), True
        when it ran to the end.
    """
    options = PipelineOptions(beam_args)
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, input_glob, output_dir, config)
    return not options.get_all_options().get("dry_run")
