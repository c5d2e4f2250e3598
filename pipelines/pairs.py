"""``curate pairs``: LAION-style image-text parquet -> CLIP-filtered webdataset shards.

The recipe: read -> caption -> dedup -> fetch (and decode) -> image_quality
[stage ``images``] -> nsfw (open_nsfw, then the safety filter) -> clip_score
(CLIP, then the score filter) [stage ``clip_score`` between the two], then
shards, rejects and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curation.budgets import FailureBudgets
from curation.fetch import FetchSettings
from curation.image_download import ImageDownloader
from curation.images import ImageSettings
from curation.models.clip import ClipSpec
from curation.models.nsfw import NsfwSpec
from curation.readers import PairColumns, pair_from_row
from curation.records import CaptionPair
from curation.tokens import TokenSettings
from filters.caption import CaptionFilter
from filters.clip_score import ClipScoreFilter
from filters.image_quality import ImageQualityFilter
from filters.nsfw import NsfwFilter
from manifests.samples import caption_pair_sample
from manifests.shards import ShardSettings
from pipelines.executor import runner
from pipelines.registry import CLIP_FLAGS, PipelineCommand, check_clip_weights
from pipelines.io import ReadParquetRecords
from pipelines.recipe import (
    Checkpoint, Dedup, Filter, Map, Model, Read, Recipe, Samples, Step, keep_first, model_entry, without,
)


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
    """The judgments; ``null`` switches one off."""

    caption: CaptionFilter | None = CaptionFilter()
    image: ImageQualityFilter | None = ImageQualityFilter()
    nsfw: NsfwFilter | None = NsfwFilter()
    clip: ClipScoreFilter | None = ClipScoreFilter()


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
    nsfw: NsfwSpec = NsfwSpec()
    clip: ClipSpec = ClipSpec()
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()
    budgets: FailureBudgets = FailureBudgets()


def download_steps(config: Any) -> tuple[Step, ...]:
    """read -> caption -> dedup -> fetch/decode -> image_quality [stage ``images``].

    Shared by ``curate pairs`` and ``curate captions``: ``config`` needs ``columns``,
    ``filters.caption``, ``filters.image``, ``fetch``, ``download`` and ``image``.
    """
    columns, filters = config.columns, config.filters
    return without([
        Read(source=lambda glob: ReadParquetRecords(glob, lambda row, source: pair_from_row(row, source, columns))),
        Filter(name="caption", filter=filters.caption) if filters.caption else None,
        Dedup(name="dedup", key=lambda r: r.id, choose=keep_first(lambda r: r.source),
              detail=lambda kept: f"same as {kept.source}"),
        Map(name="fetch", also=("decode",), fn=ImageDownloader(config.fetch, config.image),
            threads=config.download.concurrency, batch_size=config.download.batch_size),
        Filter(name="image_quality", filter=filters.image) if filters.image else None,
        Checkpoint(name="images"),
    ])


def nsfw_step(config: Any) -> Model | None:
    """open_nsfw scores of the images (``stats["nsfw"]``), then the safety filter; none when
    ``filters.nsfw`` is null. Shared by ``curate pairs`` and ``curate captions``: ``config``
    needs ``nsfw`` and ``filters.nsfw``."""
    if config.filters.nsfw is None:
        return None
    from pipelines.models import NsfwHandler, with_nsfw_score  # imports the model libraries: only when it runs

    return Model(name="nsfw", handler=NsfwHandler(config.nsfw), entry=model_entry(config.nsfw, "safety"),
                 then=with_nsfw_score, judge=config.filters.nsfw)


def clip_step(config: PairsConfig) -> Model | None:
    """CLIP image-text scores, then the score filter; the ``clip_score`` stage sits between them."""
    if not config.score_clip:
        return None
    from pipelines.models import ClipScoreHandler  # imports torch: only when CLIP runs

    return Model(name="clip_score", handler=ClipScoreHandler(config.clip), entry=model_entry(config.clip, "clip"),
                 stage="clip_score", judge=config.filters.clip)


def recipe(config: PairsConfig) -> Recipe:
    return Recipe(
        record_type=CaptionPair,
        steps=without([*download_steps(config), nsfw_step(config), clip_step(config)]),
        output=Samples(caption_pair_sample, config.tokens),
        config=config,
        switched_off={} if config.score_clip else {"clip_score": "score_clip: true"},
    )


run = runner(recipe)


COMMAND = PipelineCommand(
    name="pairs",
    help="image-text parquet (LAION-style) -> fetched, filtered, CLIP-scored shards",
    description="Read LAION-style parquet (URL/TEXT columns, configurable), fetch each image with "
    "the safe fetcher, normalise it, apply caption, image and safety (open_nsfw) filters, score with CLIP, "
    "filter on the score, and write OUTPUT/shards/*.tar, OUTPUT/manifest.json and "
    "OUTPUT/rejects/*.parquet. Stages: images, clip_score.",
    config=PairsConfig,
    recipe=recipe,
    flags=CLIP_FLAGS,
    before_run=check_clip_weights,
)
