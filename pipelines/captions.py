"""``curate captions``: LAION-style parquet -> images -> alt texts rewritten by a small generative model -> shards.

Stages (each a funnel step): read -> caption -> dedup -> fetch -> decode ->
image_quality (the same as ``curate pairs``) -> rewrite (generate, check,
retry once with another seed, then keep the alt text alone or drop) and, when
``score_clip`` is on, clip_margin (a synthetic caption whose CLIP score falls
more than a margin below the alt text's gets the same fallback).

Each sample: the image, ``txt`` = the synthetic caption (or the alt text where
the fallback kept it), ``json`` = alt text, caption source, scores, prompt and
model. The manifest names the generator (model, revision, settings) and says
whether the model saw the images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from curation.config import ConfigError, to_mapping
from curation.fetch import FetchSettings
from curation.images import ImageSettings
from curation.models.clip import ClipSpec
from curation.models.generator import GeneratorSpec
from curation.readers import PairColumns
from curation.records import CaptionPair, reject
from curation.tokens import TokenSettings
from filters.caption import CaptionFilter
from filters.caption_checks import CaptionCheckSettings, CaptionClipMarginCheck
from filters.image_quality import ImageQualityFilter
from manifests.samples import caption_pair_sample
from manifests.shards import ShardSettings
from pipelines.io import ManifestHeader, WriteDataset
from pipelines.pairs import DownloadPairs, DownloadSettings
from pipelines.transforms import REJECTS, ToSamples, count_drop
from synth.captions import (
    DEFAULT_PROMPT,
    TEXT_ONLY_PROMPT,
    Outcome,
    REWRITE_KEY,
    SOURCE_KEY,
    PromptTemplate,
    RetryPolicy,
    final_caption,
    with_outcome,
)

STEPS = ("read", "caption", "dedup", "fetch", "decode", "image_quality", "rewrite", "clip_margin")


@dataclass(frozen=True)
class CaptionsFilters:
    caption: CaptionFilter = CaptionFilter()
    image: ImageQualityFilter = ImageQualityFilter()


@dataclass(frozen=True)
class RewriteSettings:
    """How alt texts are rewritten.

    Attributes:
        prompt: prompt id or path for a generator that is shown the image.
        text_only_prompt: prompt id or path for one that is not (it never claims to see the image).
        seed: the run's sampling seed; each pair derives its own from it.
        policy: attempts per pair and what happens after the last failure.
        checks: the output checks (``null`` skips one).
    """

    prompt: str = DEFAULT_PROMPT
    text_only_prompt: str = TEXT_ONLY_PROMPT
    seed: int = 0
    policy: RetryPolicy = RetryPolicy()
    checks: CaptionCheckSettings = CaptionCheckSettings()


@dataclass(frozen=True)
class CaptionsConfig:
    """Everything ``curate captions`` can be told; every key can be set in YAML or with ``--set``.

    ``score_clip: true`` adds the CLIP margin check (image-caption score against the alt text's).
    """

    dataset: str = "captions"
    score_clip: bool = False
    columns: PairColumns = PairColumns()
    fetch: FetchSettings = FetchSettings()
    download: DownloadSettings = DownloadSettings()
    image: ImageSettings = ImageSettings()
    filters: CaptionsFilters = CaptionsFilters()
    generator: GeneratorSpec = GeneratorSpec()
    rewrite: RewriteSettings = RewriteSettings()
    clip: ClipSpec = ClipSpec()
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()


def _apply_outcome(item: tuple[CaptionPair, Outcome], provenance: dict[str, Any]) -> Iterable[Any]:
    pair, outcome = item
    if outcome.kept:
        yield with_outcome(pair, outcome, provenance)
        return
    reason = outcome.failures[-1] if outcome.failures else "rewrite_failed"
    count_drop("rewrite", reason)
    yield TaggedOutput(REJECTS, reject(pair, "rewrite", reason, detail=", ".join(outcome.failures)))


def _judge_clip_margin(pair: CaptionPair, check: CaptionClipMarginCheck, policy: RetryPolicy) -> Iterable[Any]:
    verdict = check(pair)
    if verdict.keep or pair.meta.get(SOURCE_KEY) != "synthetic":
        yield pair
        return
    failures = tuple(pair.meta[REWRITE_KEY]["failures"]) + (verdict.reason,)
    if policy.fallback == "drop":
        count_drop("clip_margin", verdict.reason)
        yield TaggedOutput(REJECTS, reject(pair, "clip_margin", verdict.reason))
        return
    provenance = {k: v for k, v in pair.meta[REWRITE_KEY].items() if k != "failures"}
    yield with_outcome(pair, Outcome("fallback", pair.text, False, failures), provenance)


def captioned_sample(pair: CaptionPair, tokenizer: Any, resolution: str = "auto") -> Any:
    """A rewritten pair as a caption-pair sample whose ``txt`` is the final caption and whose
    ``json`` keeps the alt text."""
    meta = {**pair.meta, "alt_text": pair.text}
    return caption_pair_sample(dataclasses.replace(pair, text=final_caption(pair), meta=meta), tokenizer, resolution)


def _clip_margin(pairs: beam.PCollection, config: CaptionsConfig) -> tuple[beam.PCollection, beam.PCollection]:
    from pipelines.models import ClipCaptionHandler, RunModel  # imports torch: only when CLIP runs

    scored = pairs | "ClipScoreCaptions" >> RunModel(ClipCaptionHandler(config.clip), step="clip_margin")
    check = config.rewrite.checks.clip_margin or CaptionClipMarginCheck()
    judged = scored.kept | "ClipMargin" >> beam.FlatMap(_judge_clip_margin, check, config.rewrite.policy).with_outputs(
        REJECTS, main="kept"
    )
    return judged.kept, (scored.rejects, judged[REJECTS]) | "ClipMarginRejects" >> beam.Flatten()


def generator_entry(spec: GeneratorSpec, sees_images: bool, prompt: str) -> dict[str, Any]:
    """The manifest's ``models`` entry for the rewriter: name, weights, settings, and what it saw."""
    seen = "the image and the alt text" if sees_images else "the alt text but not the image"
    return {
        "name": spec.model,
        "role": "caption_rewriter",
        "weights": spec.weights_source(),
        **{k: v for k, v in spec.describe().items() if k != "model"},
        "prompt": prompt,
        "sees_images": sees_images,
        "note": f"each synthetic caption was written from {seen}",
    }


def build(pipeline: beam.Pipeline, input_glob: str, output_dir: str, config: CaptionsConfig, sees_images: bool) -> None:
    """Adds the captions pipeline to ``pipeline``.

    Args:
        sees_images: whether the generator is shown the images (a VLM or an endpoint); it picks
            the prompt and is recorded in the manifest and in every sample.
    """
    from pipelines.models import RewriteHandler, RunModel  # imports torch: only when a model runs

    downloaded = pipeline | "Download" >> DownloadPairs(input_glob, config)
    template = PromptTemplate.load(
        config.rewrite.prompt if sees_images else config.rewrite.text_only_prompt, opener=FileSystems.open
    )
    if template.sees_image != sees_images:
        raise ConfigError(f"prompt {template.id} is written for sees_image={template.sees_image}, "
                          f"but the generator sees_images={sees_images}")
    prompt = template.id
    provenance = {"model": config.generator.model, "prompt": prompt, "saw_image": sees_images}
    handler = RewriteHandler(config.generator, template, config.rewrite)
    generated = downloaded["kept"] | "Rewrite" >> RunModel(handler, step="rewrite")
    decided = generated.kept | "ApplyOutcome" >> beam.FlatMap(_apply_outcome, provenance).with_outputs(
        REJECTS, main="kept"
    )
    kept, rejects = decided.kept, [downloaded["rejects"], generated.rejects, decided[REJECTS]]
    if config.score_clip:
        kept, clip_rejects = _clip_margin(kept, config)
        rejects.append(clip_rejects)
    models = [generator_entry(config.generator, sees_images, prompt)]
    if config.score_clip:
        models.append({"name": config.clip.model, "role": "clip", "weights": config.clip.weights_source()})
    steps = STEPS if config.score_clip else STEPS[:-1]  # clip_margin runs only with CLIP
    header = ManifestHeader(dataset=config.dataset, config=to_mapping(config), models=tuple(models), steps=steps)
    _ = {
        "samples": kept | "ToSamples" >> beam.ParDo(ToSamples(config.tokens, captioned_sample)),
        "inputs": downloaded["inputs"],
        "rejects": rejects | "AllRejects" >> beam.Flatten(),
    } | "WriteDataset" >> WriteDataset(output_dir, header, config.shards)


def run(input_glob: str, output_dir: str, config: CaptionsConfig, beam_args: list[str]) -> bool:
    """Builds and runs the captions pipeline; False when the runner only translated it (``--dry_run``).

    Whether the generator sees images is known before the job starts: an endpoint
    may be shown them; a transformers model is inspected without loading weights.
    """
    from curation.models.generator import generator_sees_images

    options = PipelineOptions(beam_args)
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, input_glob, output_dir, config, generator_sees_images(config.generator, FileSystems.open))
    return not options.get_all_options().get("dry_run")

